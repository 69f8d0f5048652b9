package status_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"

	"github.com/typedcache/groupcache"
	"github.com/typedcache/groupcache/status"
)

// The application mounts the page on its own mux, and says where its peers mount theirs: here,
// on each peer's host, port 8081.
func ExampleHandler() {
	node, err := groupcache.NewNode("127.0.0.1:8080") // its address on the peer port
	if err != nil {
		panic(err)
	}
	defer node.Close()
	users, err := groupcache.New[string, string]("users", groupcache.LoaderFunc[string, string](
		func(_ context.Context, name string) (string, error) { return "profile of " + name, nil }),
		groupcache.WithNode(node))
	if err != nil {
		panic(err)
	}
	defer users.Close()
	users.Get(context.Background(), "alice")

	mux := http.NewServeMux() // the application's, on its own port: never the peer port
	mux.Handle(status.DefaultPath, status.Handler(node, status.WithPeerURL(func(peer string) string {
		host, _, _ := net.SplitHostPort(peer)
		return "http://" + net.JoinHostPort(host, "8081") + status.DefaultPath
	})))

	// What a browser gets is the HTML page; a machine asks for JSON.
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, status.DefaultPath+"?format=json", nil))
	var rep status.Report
	if err := json.Unmarshal(w.Body.Bytes(), &rep); err != nil {
		panic(err)
	}
	fmt.Println(rep.Self, rep.Peers[0].URL)
	fmt.Println("users:", rep.Node.Caches["users"].Gets, "get,", rep.Node.Caches["users"].Loads, "load")
	// Output:
	// 127.0.0.1:8080 http://127.0.0.1:8081/debug/groupcache/
	// users: 1 get, 1 load
}
