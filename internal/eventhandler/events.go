package eventhandler

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
)

func (h *Handler) putEvents(ctx context.Context, batch []eventEntry) {
	in := &eventbridge.PutEventsInput{}
	for _, e := range batch {
		in.Entries = append(in.Entries, ebtypes.PutEventsRequestEntry{
			EventBusName: aws.String(h.c.EventBus),
			Source:       aws.String(ResultSource),
			DetailType:   aws.String(ResultDetailType),
			Detail:       aws.String(e.detail),
		})
	}
	out, err := h.c.Events.PutEvents(ctx, in)
	if err != nil {
		h.c.Log.Warn("publishing result events failed; replication is unaffected", "bus", h.c.EventBus, "entries", len(batch), "error", err.Error())
		return
	}
	if out.FailedEntryCount > 0 {
		code := ""
		for _, e := range out.Entries {
			if e.ErrorCode != nil {
				code = aws.ToString(e.ErrorCode) + ": " + aws.ToString(e.ErrorMessage)
				break
			}
		}
		h.c.Log.Warn("some result events were not published; replication is unaffected", "bus", h.c.EventBus, "failed", out.FailedEntryCount, "entries", len(batch), "error", code)
	}
}
