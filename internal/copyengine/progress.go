package copyengine

import "io"

// ProgressEvent says what happened to one blob.
type ProgressEvent int

const (
	// BlobStarted: an upload of Size bytes begins. Seen again for the same blob, the
	// upload restarted from byte 0 (a retry).
	BlobStarted ProgressEvent = iota
	// BlobBytes: Bytes more bytes of the blob were sent.
	BlobBytes
	// BlobDone: the destination accepted the blob.
	BlobDone
	// BlobSkipped: the destination already had the blob.
	BlobSkipped
	// BlobMounted: the blob was mounted from another repository of the destination
	// registry (no bytes sent).
	BlobMounted
)

// Progress is one event of a blob transfer, for progress displays (WithProgress).
type Progress struct {
	Source, Destination string // repositories, host/name
	Blob                string // digest
	Size                int64
	Bytes               int64 // BlobBytes only: bytes sent since the blob's previous event
	Event               ProgressEvent
}

func (c *Engine) report(p Progress) {
	if c.progress != nil {
		c.progress(p)
	}
}

// counting reports the bytes read from body as BlobBytes events.
func (c *Engine) counting(body io.ReadCloser, p Progress) io.ReadCloser {
	if c.progress == nil {
		return body
	}
	p.Event = BlobBytes
	return &countingBody{ReadCloser: body, c: c, p: p}
}

type countingBody struct {
	io.ReadCloser
	c *Engine
	p Progress
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		ev := b.p
		ev.Bytes = int64(n)
		b.c.report(ev)
	}
	return n, err
}
