// The routes of benches/load on Go's net/http, as a reference: Go closes a
// connection with an unread body by sending FIN and then waiting 500 ms
// (rstAvoidanceDelay) without reading, and discards up to 256 KiB of an
// unread body to keep a connection alive; beyond that it answers with
// Connection: close and does not read while it writes (POST /big).
//
// Built by run.sh with `go build` into a temporary directory:
//
//	go run main.go 127.0.0.1:8086
package main

import (
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
)

// The answer to POST /big: 8 MiB, far more than the socket buffers hold
// (benches/load/sendfirst.sh).
var big = make([]byte, 8<<20)

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: goserver <addr>")
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch {
		case r.Method == "GET" && r.URL.Path == "/":
			w.Write([]byte("hello\n"))
		case r.Method == "POST" && r.URL.Path == "/ignore":
			w.Write([]byte("ignored\n"))
		case r.Method == "POST" && r.URL.Path == "/read":
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Write([]byte("read\n"))
		case r.Method == "POST" && r.URL.Path == "/reject":
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			w.Write([]byte("rejected\n"))
		case r.Method == "POST" && r.URL.Path == "/big":
			// Without reading the body; a length, as the other servers send.
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			w.Write(big)
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte("not found\n"))
		}
	})
	log.Fatal(http.ListenAndServe(os.Args[1], handler))
}
