package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// counts is what one proxy saw: requests per method and body bytes in each direction,
// from the client's point of view (written = request bodies, read = response bodies).
type counts struct {
	Requests map[string]int64
	Read     int64
	Written  int64
}

func (c counts) total() int64 {
	var n int64
	for _, v := range c.Requests {
		n += v
	}
	return n
}

func (c *counts) add(o counts) {
	if c.Requests == nil {
		c.Requests = map[string]int64{}
	}
	for k, v := range o.Requests {
		c.Requests[k] += v
	}
	c.Read += o.Read
	c.Written += o.Written
}

// proxy is a reverse proxy on 127.0.0.1 that counts requests and bytes per method and
// delays every request by a fixed amount. Its target can change between runs (a fresh
// destination registry per run) while its address stays.
type proxy struct {
	ln     net.Listener
	srv    *http.Server
	target atomic.Pointer[url.URL]
	delay  atomic.Int64 // nanoseconds

	// rewrite, when set, replaces strings in response bodies (the sandbox's ECR API
	// announces registry hosts, which must become the proxies' hosts).
	rewrite *strings.Replacer

	mu      sync.Mutex
	reqs    map[string]int64
	read    atomic.Int64
	written atomic.Int64
}

// traceOut, when BENCH_TRACE names a file, receives one line per proxied request
// (proxy address, method, URI): where a tool's requests go, for profiling request counts.
var traceOut = func() io.Writer {
	p := os.Getenv("BENCH_TRACE")
	if p == "" {
		return nil
	}
	f, err := os.Create(p)
	if err != nil {
		fmt.Fprintln(os.Stderr, "BENCH_TRACE:", err)
		os.Exit(2)
	}
	return &lockedWriter{w: f}
}()

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func newProxy(target string, rewrite *strings.Replacer) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, reqs: map[string]int64{}, rewrite: rewrite}
	p.setTarget(target)
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			t := p.target.Load()
			r.Out.URL.Scheme = t.Scheme
			r.Out.URL.Host = t.Host
			// Keep the client's Host: registries build upload Locations from it, so the
			// client keeps talking through the proxy.
			r.Out.Host = r.In.Host
			if p.rewrite != nil {
				r.Out.Header.Del("Accept-Encoding")
			}
		},
		Transport:     tr,
		FlushInterval: -1,
		ModifyResponse: func(resp *http.Response) error {
			if p.rewrite == nil || resp.Body == nil {
				return nil
			}
			b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
			resp.Body.Close()
			if err != nil {
				return err
			}
			b = []byte(p.rewrite.Replace(string(b)))
			resp.Body = io.NopCloser(bytes.NewReader(b))
			resp.ContentLength = int64(len(b))
			resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
			return nil
		},
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := time.Duration(p.delay.Load()); d > 0 {
			time.Sleep(d)
		}
		p.mu.Lock()
		p.reqs[r.Method]++
		p.mu.Unlock()
		if traceOut != nil {
			fmt.Fprintf(traceOut, "%s %s %s\n", p.addr(), r.Method, r.URL.RequestURI())
		}
		if r.Body != nil {
			r.Body = &countingReader{r: r.Body, n: &p.written}
		}
		rp.ServeHTTP(&countingWriter{ResponseWriter: w, n: &p.read}, r)
	})}
	go p.srv.Serve(ln)
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) setTarget(hostport string) {
	p.target.Store(&url.URL{Scheme: "http", Host: hostport})
}

func (p *proxy) setDelay(d time.Duration) { p.delay.Store(int64(d)) }

// take returns the counts since the last take and resets them.
func (p *proxy) take() counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := counts{Requests: p.reqs, Read: p.read.Swap(0), Written: p.written.Swap(0)}
	p.reqs = map[string]int64{}
	return c
}

func (p *proxy) close() { p.srv.Close() }

type countingReader struct {
	r io.ReadCloser
	n *atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
