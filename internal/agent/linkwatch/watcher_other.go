//go:build !linux

package linkwatch

import "context"

// Run does nothing until ctx ends: there are no link notifications to
// follow here (the Linux bridge flavour needs Linux).
func (w *Watcher) Run(ctx context.Context, _ func()) error {
	<-ctx.Done()
	return nil
}
