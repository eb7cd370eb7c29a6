package bench

import (
	"context"
	"fmt"
)

// MemoryRecord is the memory workload's outcome for one front: a fresh
// process, its resident memory once idle, then its peak while scrapers
// read the large body through it.
type MemoryRecord struct {
	// Front is the front's name.
	Front string `json:"front"`
	// IdleRSSKiB is VmRSS of the front's process tree after start and one
	// probe request, once idle; nil when it could not be read.
	IdleRSSKiB *int64 `json:"idle_rss_kib"`
	// PeakRSSKiB is VmHWM of the tree after the load: the peak since start.
	PeakRSSKiB *int64 `json:"peak_rss_kib"`
	// Run is the load through the front.
	Run RunRecord `json:"run"`
	// Error says why a figure is missing.
	Error string `json:"error,omitempty"`
}

// memory runs w once against a fresh process of every forwarding front:
// VmHWM counts from the start of a process, so sharing one with the
// other workloads would measure them instead.
func (r *runner) memory(ctx context.Context, w workload, fronts []*frontKind) error {
	if err := r.startUpstream(sizeBig, false); err != nil {
		return err
	}
	defer r.upstreams[sizeBig].child.stop()
	for _, k := range fronts {
		if !k.forwards {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted: %w", err)
		}
		rec := r.memoryFront(ctx, w, k)
		r.report.Memory = append(r.report.Memory, rec)
		r.done(w, rec.Run)
	}
	return nil
}

func (r *runner) memoryFront(ctx context.Context, w workload, k *frontKind) MemoryRecord {
	rec := MemoryRecord{Front: k.Name}
	inst := r.startInstance(ctx, k, sizeBig, false)
	if inst.root != nil {
		defer inst.root.stop()
	}
	if inst.err != nil {
		rec.Error = "front did not start: " + inst.err.Error()
		rec.Run = RunRecord{Workload: w.ID, Front: k.Name, Round: 1, Error: rec.Error}
		return rec
	}

	sleep(ctx, r.plan.idleWait)
	if m, err := r.proc.TreeMemory(inst.root.pid()); err != nil {
		rec.Error = "idle RSS: " + err.Error()
	} else {
		rec.IdleRSSKiB = &m.RSSKiB
	}
	rec.Run = r.measure(ctx, w, inst, 1)
	if !rec.Run.ok() {
		return rec
	}
	if m, err := r.proc.TreeMemory(inst.root.pid()); err != nil {
		rec.Error = "peak RSS: " + err.Error()
	} else {
		rec.PeakRSSKiB = &m.HWMKiB
	}
	return rec
}
