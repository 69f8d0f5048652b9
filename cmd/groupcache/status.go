package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/status"
)

// statusURL returns the URL of the JSON report of the status page at addr: a URL as it is, or
// host:port with the page at status.DefaultPath.
func statusURL(addr string) (string, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr + status.DefaultPath
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is neither host:port nor an http(s) URL of a status page", addr)
	}
	q := u.Query()
	q.Set("format", "json")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// fetchReport returns the report of the status page at addr.
func fetchReport(ctx context.Context, addr string) (status.Report, error) {
	var rep status.Report
	u, err := statusURL(addr)
	if err != nil {
		return rep, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return rep, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return rep, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return rep, fmt.Errorf("%s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&rep); err != nil {
		return rep, fmt.Errorf("%s: not a status report: %w", u, err)
	}
	return rep, nil
}

// reports fetches the reports of addrs, and with all those of every peer they link to.
func reports(ctx context.Context, addrs []string, all bool) ([]status.Report, error) {
	var reps []status.Report
	seen := map[string]bool{}
	for i := 0; i < len(addrs); i++ {
		rep, err := fetchReport(ctx, addrs[i])
		if err != nil {
			return nil, err
		}
		if seen[rep.Self] {
			continue
		}
		seen[rep.Self] = true
		reps = append(reps, rep)
		for _, p := range rep.Peers {
			if all && p.URL != "" && !seen[p.Addr] && !slices.Contains(addrs, p.URL) {
				addrs = append(addrs, p.URL)
			}
		}
	}
	return reps, nil
}

// statusFlags are the flags of the commands that read status pages.
type statusFlags struct {
	timeout time.Duration
	all     bool
}

func (f *statusFlags) register(fs *flag.FlagSet, all bool) {
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for all the answers")
	if all {
		fs.BoolVar(&f.all, "all", false, "also read every peer whose status page the pages link to")
	}
}

// stats prints a table of every cache on every node, and of every cache in the whole cluster.
func stats(args []string, out io.Writer) error {
	var f statusFlags
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	f.register(fs, true)
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return errUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	reps, err := reports(ctx, fs.Args(), f.all)
	if err != nil {
		return err
	}
	slices.SortFunc(reps, func(a, b status.Report) int { return strings.Compare(a.Self, b.Self) })
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tcache\tgets\thit%\tgets/s\tloads\tloads/s\tload errors\tpeer errors\titems\tbytes\tevictions\tpeers' requests\tload p99\tfetch p99\t")
	total := map[string]groupcache.Stats{}
	totalRates := map[string]status.Rates{}
	for _, rep := range reps {
		for _, name := range slices.Sorted(maps.Keys(rep.Node.Caches)) {
			st, r := rep.Node.Caches[name], rep.Rates[name]
			statsRow(tw, rep.Self, name, st, r)
			total[name] = add(total[name], st)
			t := totalRates[name]
			t.Gets, t.Loads = t.Gets+r.Gets, t.Loads+r.Loads
			t.LoadLatency.Merge(r.LoadLatency)
			t.FetchLatency.Merge(r.FetchLatency)
			totalRates[name] = t
		}
	}
	if len(reps) > 1 {
		for _, name := range slices.Sorted(maps.Keys(total)) {
			statsRow(tw, fmt.Sprintf("all %d", len(reps)), name, total[name], totalRates[name])
		}
	}
	return tw.Flush()
}

// statsRow writes a row of the stats table. The hit ratio is over the counters' whole life; the
// rates and latencies over the span of the node's report.
func statsRow(w io.Writer, node, cache string, st groupcache.Stats, r status.Rates) {
	hit := "-"
	if st.Gets > 0 {
		hit = fmt.Sprintf("%.1f", 100*float64(st.Hits)/float64(st.Gets))
	}
	fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%.1f\t%d\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", node, cache, st.Gets, hit, r.Gets,
		st.Loads, r.Loads, st.LoadErrors, st.RemoteErrors, st.Items, st.Bytes, st.Evictions, st.PeerRequests,
		latency(r.LoadLatency.Quantile(0.99)), latency(r.FetchLatency.Quantile(0.99)))
}

// add returns the sum of the counters the stats table shows.
func add(a, b groupcache.Stats) groupcache.Stats {
	a.Gets += b.Gets
	a.Hits += b.Hits
	a.Loads += b.Loads
	a.LoadErrors += b.LoadErrors
	a.RemoteErrors += b.RemoteErrors
	a.Items += b.Items
	a.Bytes += b.Bytes
	a.Evictions += b.Evictions
	a.PeerRequests += b.PeerRequests
	return a
}

// peers prints the peer set of the node whose status page is at ADDR: each peer's state, share
// of the ring, the node's requests to it over the report's span with their latency, its errors.
func peers(args []string, out io.Writer) error {
	var f statusFlags
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	f.register(fs, false)
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, usage)
		return errUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	rep, err := fetchReport(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	// The fetches are over the report's span ("fetches/61s"), errors since the node started.
	fmt.Fprintf(tw, "peer\tstate\tshare\tfetches/%ss\tp50\tp99\terrors\tstatus page\n", strconv.FormatFloat(rep.RateSeconds, 'g', 2, 64))
	for _, p := range rep.Peers {
		ps := rep.Node.Peers[p.Addr]
		state := "up"
		switch {
		case p.Self:
			state = "self"
		case ps.Down:
			state = "down-until-" + ps.DownUntil.UTC().Format("15:04:05")
		}
		h := p.Rates.FetchLatency
		fmt.Fprintf(tw, "%s\t%s\t%.1f%%\t%d\t%s\t%s\t%d\t%s\n", p.Addr, state, 100*ps.RingShare, h.Count(),
			latency(h.Quantile(0.5)), latency(h.Quantile(0.99)), ps.Errors, cmp.Or(p.URL, "-"))
	}
	return tw.Flush()
}

// latency prints a duration with 3 significant digits, "-" for 0 (an empty histogram).
func latency(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	for _, u := range []time.Duration{time.Second, time.Millisecond, time.Microsecond} {
		if d >= u {
			return strconv.FormatFloat(float64(d)/float64(u), 'g', 3, 64) + strings.TrimPrefix(u.String(), "1")
		}
	}
	return d.String()
}
