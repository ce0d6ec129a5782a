package retry

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// h2Server is an HTTP/2 server over cleartext TCP on 127.0.0.1 that answers every request
// with a stream reset of a given code, or with a GOAWAY and a closed connection: what a
// registry (or a load balancer in front of it) sends when it fails a stream or drops a
// connection.
func h2Server(t *testing.T, answer func(fr *http2.Framer, streamID uint32) (closeConn bool)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				preface := make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(conn, preface); err != nil {
					return
				}
				fr := http2.NewFramer(conn, conn)
				if fr.WriteSettings() != nil {
					return
				}
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					switch f := f.(type) {
					case *http2.SettingsFrame:
						if !f.IsAck() && fr.WriteSettingsAck() != nil {
							return
						}
					case *http2.HeadersFrame:
						if answer(fr, f.StreamID) {
							return
						}
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/v2/"
}

// h2Client speaks HTTP/2 without TLS (prior knowledge), as a registry client does over TLS.
func h2Client() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}, Timeout: 10 * time.Second}
}

// streamedBody is a request body net/http cannot rewind (no GetBody), like a blob
// upload streamed from the source.
type streamedBody struct{ io.Reader }

func (streamedBody) Close() error { return nil }

// TestHTTP2ResetsAreRetryable: the errors net/http's HTTP/2 transport returns for a
// stream the server reset (INTERNAL_ERROR, REFUSED_STREAM) or a connection it ended
// (GOAWAY) are retryable; a protocol error between the two ends is not. They were all
// permanent (no code), so one reset dropped the push.
func TestHTTP2ResetsAreRetryable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		answer func(fr *http2.Framer, id uint32) bool
		code   string
		retry  bool
	}{
		{"INTERNAL_ERROR", http.MethodGet, func(fr *http2.Framer, id uint32) bool {
			fr.WriteRSTStream(id, http2.ErrCodeInternal)
			return false
		}, "HTTP2_INTERNAL_ERROR", true},
		// net/http retries a refused stream itself when it can replay the body; a blob
		// upload's body it cannot, and then the reset comes back as text.
		{"REFUSED_STREAM on a streamed upload", http.MethodPut, func(fr *http2.Framer, id uint32) bool {
			fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
			return false
		}, "HTTP2_REFUSED_STREAM", true},
		{"ENHANCE_YOUR_CALM", http.MethodGet, func(fr *http2.Framer, id uint32) bool {
			fr.WriteRSTStream(id, http2.ErrCodeEnhanceYourCalm)
			return false
		}, "HTTP2_ENHANCE_YOUR_CALM", true},
		{"GOAWAY", http.MethodGet, func(fr *http2.Framer, id uint32) bool {
			fr.WriteGoAway(id, http2.ErrCodeInternal, nil)
			return true
		}, "HTTP2_GOAWAY", true},
		{"HTTP_1_1_REQUIRED (permanent)", http.MethodPut, func(fr *http2.Framer, id uint32) bool {
			fr.WriteRSTStream(id, http2.ErrCodeHTTP11Required)
			return false
		}, "HTTP2_HTTP_1_1_REQUIRED", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := h2Server(t, tc.answer)
			var body io.ReadCloser
			if tc.method == http.MethodPut {
				body = streamedBody{strings.NewReader(strings.Repeat("x", 1<<10))}
			}
			req, err := http.NewRequestWithContext(context.Background(), tc.method, url, body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := h2Client().Do(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("HTTP %d; want the reset", resp.StatusCode)
			}
			code, retry := Classify(err)
			if code != tc.code || retry != tc.retry {
				t.Fatalf("Classify(%v) = %q, %v; want %q, %v", err, code, retry, tc.code, tc.retry)
			}
		})
	}
}
