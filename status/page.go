package status

import (
	"fmt"
	"html/template"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/observe"
)

// view is what the template renders: the report, and its parts in the page's order.
type view struct {
	Report
	Uptime, Span string
	Peers        []peerView
	Caches       []cacheView
}

// peerView is one peer's row.
type peerView struct {
	Peer
	S observe.PeerStats
}

// cacheView is one cache's row.
type cacheView struct {
	Name string
	S    groupcache.Stats
	R    Rates
}

// writePage renders rep as the HTML page.
func writePage(w io.Writer, rep Report) error {
	v := view{Report: rep, Uptime: duration(rep.UptimeSeconds), Span: duration(rep.RateSeconds)}
	for _, p := range rep.Peers {
		v.Peers = append(v.Peers, peerView{p, rep.Node.Peers[p.Addr]})
	}
	for _, name := range slices.Sorted(maps.Keys(rep.Node.Caches)) {
		v.Caches = append(v.Caches, cacheView{name, rep.Node.Caches[name], rep.Rates[name]})
	}
	return page.Execute(w, v)
}

// latency prints a duration with 3 significant digits, "-" for 0 (an empty histogram).
func latency(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%.3gµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.3gms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.3gs", d.Seconds())
}

// duration prints seconds as a duration to the second.
func duration(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Second).String()
}

// bytes prints n bytes with a binary unit.
func bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n)/unit, 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTP"[i])
}

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"bytes":   bytes,
	"rate":    func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"percent": func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
	"time":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"clock":   func(t time.Time) string { return t.UTC().Format("15:04:05") },
	"p50":     func(h observe.Histogram) string { return latency(h.Quantile(0.5)) },
	"p99":     func(h observe.Histogram) string { return latency(h.Quantile(0.99)) },
	"mean":    func(h observe.Histogram) string { return latency(h.Mean()) },
}).Parse(pageHTML))

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>groupcache {{.Self}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.4em; margin: 0 0 .2em; }
h2 { font-size: 1.1em; margin: 1.6em 0 .4em; }
.meta { color: #555; }
table { border-collapse: collapse; }
th, td { padding: .25em .7em; border-bottom: 1px solid #e3e3e8; text-align: right; white-space: nowrap; }
th { background: #f4f4f7; font-weight: 600; }
th:first-child, td:first-child { text-align: left; }
td { font-variant-numeric: tabular-nums; }
tr.self td:first-child::after { content: " (this node)"; color: #555; }
.note { color: #555; font-size: .9em; }
meter { width: 5em; vertical-align: middle; }
a { color: #0645ad; }
.down { color: #b00020; font-weight: 600; }
td.state, td.url, td.keys, td.cache, td.peer, td.msg, th.l { text-align: left; }
td.msg, td.keys { white-space: normal; max-width: 60em; }
code { font: .95em ui-monospace, monospace; background: #f4f4f7; padding: 0 .2em; }
</style>
</head>
<body>
<h1>groupcache node <span id="self">{{.Self}}</span></h1>
<p class="meta">{{if .Host}}on <span id="host">{{.Host}}</span>, {{end}}process {{.PID}}, up <span id="uptime">{{.Uptime}}</span>, since {{time .Node.Started}}; report of {{time .Time}}
· <a href="?format=json">JSON</a></p>

<h2>Peers ({{len .Peers}})</h2>
<p class="note">Fetches: this node's requests to the peer for values over the last {{.Span}}, and their latency (a bucket's bound: at most twice the true value).</p>
<table id="peers">
<tr><th>peer</th><th class="l">state</th><th>ring share</th><th>fetches</th><th>p50</th><th>p99</th><th>errors/s</th><th>errors</th><th class="l">status page</th></tr>
{{range .Peers}}<tr data-peer="{{.Addr}}"{{if .Self}} class="self"{{end}}>
<td class="addr">{{if .URL}}<a href="{{.URL}}">{{.Addr}}</a>{{else}}{{.Addr}}{{end}}</td>
<td class="state">{{if .Self}}this node{{else if .S.Down}}<span class="down">down until {{clock .S.DownUntil}}</span>{{else}}up{{end}}</td>
<td class="share">{{percent .S.RingShare}}</td>
<td class="fetches">{{.Rates.FetchLatency.Count}}</td><td class="fetch-p50">{{p50 .Rates.FetchLatency}}</td><td class="fetch-p99">{{p99 .Rates.FetchLatency}}</td>
<td class="errors-rate">{{rate .Rates.Errors}}</td><td class="errors">{{.S.Errors}}</td>
<td class="url">{{if .URL}}{{.URL}}{{else}}unknown{{end}}</td>
</tr>
{{end}}</table>

<h2>Caches ({{len .Caches}}): reads and loads</h2>
<p class="note">Rates over the last <span id="span">{{.Span}}</span>; counters since each cache started.</p>
<table id="reads">
<tr><th>cache</th><th>gets/s</th><th>hit ratio</th><th>gets</th><th>hits</th><th>hot hits</th><th>misses</th>
<th>loads/s</th><th>loads</th><th>load errors</th><th>fetches/s</th><th>fetched from peers</th><th>peer errors</th><th>peers' requests/s</th><th>peers' requests</th></tr>
{{range .Caches}}<tr data-cache="{{.Name}}">
<td class="name">{{.Name}}</td><td class="gets-rate">{{rate .R.Gets}}</td><td class="hit-ratio">{{percent .R.HitRatio}}</td>
<td class="gets">{{.S.Gets}}</td><td class="hits">{{.S.Hits}}</td><td class="hot-hits">{{.S.HotHits}}</td><td class="misses">{{.S.Misses}}</td>
<td class="loads-rate">{{rate .R.Loads}}</td><td class="loads">{{.S.Loads}}</td><td class="load-errors">{{.S.LoadErrors}}</td>
<td class="fetches-rate">{{rate .R.RemoteGets}}</td><td class="remote-gets">{{.S.RemoteGets}}</td><td class="remote-errors">{{.S.RemoteErrors}}</td>
<td class="peer-requests-rate">{{rate .R.PeerRequests}}</td><td class="peer-requests">{{.S.PeerRequests}}</td>
</tr>
{{end}}</table>

<h2>Caches: memory and wire</h2>
<table id="memory">
<tr><th>cache</th><th>items</th><th>bytes</th><th>of max</th><th></th><th>hot items</th><th>hot bytes</th><th>evictions/s</th><th>evictions</th><th>expirations</th>
<th>too large</th><th>sent (raw)</th><th>received (raw)</th></tr>
{{range .Caches}}<tr data-cache="{{.Name}}">
<td class="name">{{.Name}}</td><td class="items">{{.S.Items}}</td>
<td class="bytes" title="{{.S.Bytes}}">{{bytes .S.Bytes}}</td><td class="max-bytes" title="{{.S.MaxBytes}}">{{bytes .S.MaxBytes}}</td>
<td><meter value="{{.S.Bytes}}" max="{{.S.MaxBytes}}"></meter></td>
<td class="hot-items">{{.S.HotItems}}</td><td class="hot-bytes" title="{{.S.HotBytes}}">{{bytes .S.HotBytes}}</td>
<td class="evictions-rate">{{rate .R.Evictions}}</td><td class="evictions">{{.S.Evictions}}</td><td class="expirations">{{.S.Expirations}}</td>
<td class="too-large">{{.S.TooLarge}}</td>
<td class="sent" title="{{.S.BytesSent}}">{{bytes .S.BytesSent}} ({{bytes .S.BytesSentRaw}})</td>
<td class="received" title="{{.S.BytesReceived}}">{{bytes .S.BytesReceived}} ({{bytes .S.BytesReceivedRaw}})</td>
</tr>
{{end}}</table>

<h2>Caches: latency</h2>
<p class="note">Loads (the loader's calls) and fetches (requests to owners) over the last {{.Span}}; evictions of entries not yet expired, and their age then, since each cache started.</p>
<table id="latency">
<tr><th>cache</th><th>loads</th><th>p50</th><th>p99</th><th>mean</th><th>fetches</th><th>p50</th><th>p99</th><th>mean</th><th>evicted fresh</th><th>age p50</th></tr>
{{range .Caches}}<tr data-cache="{{.Name}}">
<td class="name">{{.Name}}</td>
<td class="load-count">{{.R.LoadLatency.Count}}</td><td class="load-p50">{{p50 .R.LoadLatency}}</td><td class="load-p99">{{p99 .R.LoadLatency}}</td><td class="load-mean">{{mean .R.LoadLatency}}</td>
<td class="fetch-count">{{.R.FetchLatency.Count}}</td><td class="fetch-p50">{{p50 .R.FetchLatency}}</td><td class="fetch-p99">{{p99 .R.FetchLatency}}</td><td class="fetch-mean">{{mean .R.FetchLatency}}</td>
<td class="evicted-fresh">{{.S.EvictedFresh}}</td><td class="eviction-age">{{p50 .S.EvictionAge}}</td>
</tr>
{{end}}</table>

<h2>Hottest keys</h2>
<p class="note">The keys fetched from their owners most often lately (what the promoter sees), with an estimate of how often.</p>
<table id="hot-keys">
<tr><th>cache</th><th class="l">keys</th></tr>
{{range .Caches}}{{if .S.HotKeys}}<tr data-cache="{{.Name}}"><td class="name">{{.Name}}</td>
<td class="keys">{{range $i, $k := .S.HotKeys}}{{if $i}}, {{end}}<code>{{$k.Key}}</code>&nbsp;×{{$k.Count}}{{end}}</td></tr>
{{end}}{{end}}</table>

<h2>Last failures</h2>
{{if .Node.Failures}}<table id="failures">
<tr><th>last at</th><th class="l">cache</th><th class="l">peer</th><th>times</th><th class="l">error</th></tr>
{{range .Node.Failures}}<tr><td>{{time .Time}}</td><td class="cache">{{.Cache}}</td><td class="peer">{{.Peer}}</td><td class="count">{{.Count}}</td><td class="msg">{{.Msg}}</td></tr>
{{end}}</table>{{else}}<p id="failures" class="note">None.</p>{{end}}

<h2>Transport</h2>
<table id="transport">
<tr><th></th><th>requests</th><th>errors</th><th>bytes out</th><th>bytes in</th><th>connections open</th><th>connections made</th><th>refused</th><th>served p50</th><th>p99</th></tr>
{{with .Node.Client}}<tr data-side="client"><td>to peers</td><td class="requests">{{.Requests}}</td><td class="errors">{{.Errors}}</td>
<td title="{{.BytesSent}}">{{bytes .BytesSent}}</td><td title="{{.BytesReceived}}">{{bytes .BytesReceived}}</td><td>{{.OpenConns}}</td><td>{{.Dials}}</td><td></td><td></td><td></td></tr>{{end}}
{{with .Node.Server}}<tr data-side="server"><td>from peers</td><td class="requests">{{.Requests}}</td><td class="errors">{{.Panics}} panics</td>
<td title="{{.BytesOut}}">{{bytes .BytesOut}}</td><td title="{{.BytesIn}}">{{bytes .BytesIn}}</td><td>{{.ActiveConns}}</td><td>{{.Conns}}</td><td class="refused">{{.Refused}}</td>
<td class="serve-p50">{{p50 $.ServeLatency}}</td><td class="serve-p99">{{p99 $.ServeLatency}}</td></tr>{{end}}
</table>
{{if .Node.Misnamed}}<p class="note">Connections to a peer that names itself otherwise than this node's peer set: {{.Node.Misnamed}}.</p>{{end}}
</body>
</html>
`
