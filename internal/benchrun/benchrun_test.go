package benchrun

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/bagpipe-go/bagpipe/internal/config"
)

// TestBGPConfParses checks that the shared [BGP] and [API] sections, with
// a pair's peer lines and a dataplane section after them, are a bgp.conf
// the daemon takes without warnings, with RT Constraint on and the AS
// shared by the pair.
func TestBGPConfParses(t *testing.T) {
	conf := BGPConf(netip.MustParseAddr("127.0.0.51"), "peers = 127.0.0.52\nbgp_port = 1790\nlisten = False") +
		"\n[DATAPLANE_DRIVER_IPVPN]\ndataplane_driver = dummy\n"
	cfg, err := config.Parse([]config.Source{{Name: "bgp.conf", Data: []byte(conf)}}, config.Options{})
	if err != nil {
		t.Fatalf("parse:\n%s\n%v", conf, err)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
	for _, want := range []string{"my_as = 64512", "enable_rtc = True", "[API]\nhost = 127.0.0.1\nport = 0"} {
		if !strings.Contains(conf, want) {
			t.Errorf("conf lacks %q:\n%s", want, conf)
		}
	}
}
