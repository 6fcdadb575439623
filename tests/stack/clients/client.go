// One real Go client (net/http) runs the README's scenarios; see ../real_clients.rs.
//
// Usage: go run client.go SCENARIO=BASE_URL ...
// Prints one line per scenario: the scenario, then one field per request,
// tab-separated: `STATUS BODY_BYTES`, or `error MESSAGE`.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

const mib = 1024 * 1024

type step struct {
	path    string
	body    []byte
	chunked bool
	close   bool
}

func plan(scenario string) []step {
	second := step{path: "/consume", body: []byte("a=b&x=y")}
	switch scenario {
	case "chunked64":
		return []step{{path: "/ignore", body: bytes.Repeat([]byte("a"), 64*1024), chunked: true}, second}
	case "over_limit":
		return []step{{path: "/ignore", body: bytes.Repeat([]byte("a"), mib)}, second}
	case "early413":
		return []step{{path: "/upload", body: bytes.Repeat([]byte("u"), 16*mib)}}
	case "big_close":
		return []step{{path: "/big", body: bytes.Repeat([]byte("b"), 64*1024), close: true}}
	}
	panic("unknown scenario " + scenario)
}

// onlyReader hides Len, so that net/http sends the body chunked.
type onlyReader struct{ io.Reader }

func main() {
	for _, pair := range os.Args[1:] {
		scenario, base, _ := strings.Cut(pair, "=")
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
		fields := []string{}
		for _, s := range plan(scenario) {
			var body io.Reader = bytes.NewReader(s.body)
			if s.chunked {
				body = onlyReader{body}
			}
			request, _ := http.NewRequest("POST", base+s.path, body)
			request.Close = s.close
			response, err := client.Do(request)
			if err == nil {
				var n int64
				n, err = io.Copy(io.Discard, response.Body)
				response.Body.Close()
				if err == nil {
					fields = append(fields, fmt.Sprintf("%d %d", response.StatusCode, n))
					continue
				}
			}
			fields = append(fields, "error "+strings.Join(strings.Fields(err.Error()), " "))
		}
		fmt.Println(scenario + "\t" + strings.Join(fields, "\t"))
	}
}
