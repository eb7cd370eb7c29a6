package proxy

import (
	"context"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// settleDelay is how long the watcher waits after a file event before it
// reloads, so that a burst of writes (a cert, then its key; a
// truncate-then-write) is read once, when it is over.
const settleDelay = 150 * time.Millisecond

// watch starts watching the material's files and reloads it when they
// change, until ctx is done. The watches are in place when it returns.
//
// It watches the folders that hold the files rather than the files, because
// the ways files really change replace the inode: an atomic rename into
// place, or Kubernetes swapping the ..data symlink of a secret volume. A
// periodic check catches what the events miss (network file systems,
// nested symlinks, a folder that was itself replaced).
func (r *certReloader) watch(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		r.log.Warn("file events unavailable; relying on the periodic check",
			"interval", r.ms.ReloadInterval.String(), "err", err.Error())
		w = nil
	} else {
		r.addWatches(w)
	}
	r.log.Debug("watching certificate files", "events", w != nil,
		"interval", r.ms.ReloadInterval.String())

	// Files may have changed between the first load and the watches.
	_ = r.Reload("start", false)
	go r.watchLoop(ctx, w)
}

func (r *certReloader) watchLoop(ctx context.Context, w *fsnotify.Watcher) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}

	tick := time.NewTicker(r.ms.ReloadInterval.Duration)
	defer tick.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()

	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			settle.Reset(settleDelay)
		case err := <-errs:
			r.log.Debug("file watch error", "err", err.Error())
		case <-settle.C:
			r.reloadAndRewatch(w, "file change")
		case now := <-tick.C:
			r.reloadAndRewatch(w, "periodic check")
			r.mu.Lock()
			if now.Sub(r.lastExpiry) >= 24*time.Hour {
				r.checkExpiry(now)
			}
			r.mu.Unlock()
		}
	}
}

func (r *certReloader) reloadAndRewatch(w *fsnotify.Watcher, trigger string) {
	_ = r.Reload(trigger, false)
	if w != nil {
		r.addWatches(w)
	}
}

// addWatches watches every folder holding a material file. Adding a folder
// already watched is a no-op, so this also restores a watch lost when a
// folder was replaced.
func (r *certReloader) addWatches(w *fsnotify.Watcher) {
	seen := map[string]bool{}
	for _, f := range materialFiles(r.ms) {
		dir := filepath.Dir(f)
		if seen[dir] {
			continue
		}
		seen[dir] = true
		if err := w.Add(dir); err != nil {
			r.log.Debug("cannot watch folder", "dir", dir, "err", err.Error())
		}
	}
}
