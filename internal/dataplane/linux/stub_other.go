//go:build !linux

package linux

import (
	"errors"

	"github.com/bagpipe-go/bagpipe/internal/dataplane"
)

// Driver stands for the driver where it cannot exist.
type Driver struct{ dataplane.Driver }

// New fails: the driver programs the Linux kernel.
func New(Config) (*Driver, error) {
	return nil, errors.New("linux E-VPN dataplane: only available on Linux")
}
