package ovs

import (
	"errors"
	"strings"
	"testing"
)

func TestOfctlError(t *testing.T) {
	out := "Error OFPGMFC_GROUP_EXISTS for: OFPT_GROUP_MOD (OF1.5) (xid=0x6):\n ADD group_id=1,type=select\nError OFPBFC_MSG_FAILED for: OFPT_BUNDLE_CONTROL (OF1.5) (xid=0x9):\n bundle_id=0 type=COMMIT_REQUEST flags=atomic ordered\n"
	if got := ofctlError([]byte(out), nil); got != "Error OFPGMFC_GROUP_EXISTS for: OFPT_GROUP_MOD (OF1.5) (xid=0x6): | ADD group_id=1,type=select | "+
		"Error OFPBFC_MSG_FAILED for: OFPT_BUNDLE_CONTROL (OF1.5) (xid=0x9): | bundle_id=0 type=COMMIT_REQUEST flags=atomic ordered" {
		t.Errorf("%s", got)
	}
	if got := ofctlError([]byte(out+"more\nand more\n"), nil); !strings.HasSuffix(got, "| ...") || strings.Contains(got, "more") {
		t.Errorf("long output: %s", got)
	}
	if got := ofctlError(nil, errors.New("exit status 1")); got != "exit status 1" {
		t.Errorf("no output: %s", got)
	}
}
