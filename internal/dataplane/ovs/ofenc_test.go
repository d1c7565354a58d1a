package ovs

import (
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzEncodeLine: any text is encoded or refused, never a panic, and an
// encoded message's length field is its length.
func FuzzEncodeLine(f *testing.F) {
	for _, l := range []string{
		"flow add table=2,cookie=0x7,priority=36760,ip,reg0=0x7,nw_dst=203.0.113.0/24 actions=dec_ttl,group:1",
		"group add_or_mod group_id=1,type=select,selection_method=dp_hash,bucket=bucket_id:0,actions=output:3",
		"flow delete cookie=0x1/-1", "group delete group_id=5",
		"flow add table=0,cookie=0x1,priority=1,tcp,tp_src=0x400/0xfc00 actions=resubmit(5,1)",
	} {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		m, err := encodeLine(line, 9)
		if err != nil {
			if !errors.Is(err, errUnencodable) {
				t.Fatalf("%q: %v", line, err)
			}
			return
		}
		if len(m) < ofHeaderLen || int(binary.BigEndian.Uint16(m[2:])) != len(m) || m[0] != ofVersion {
			t.Fatalf("%q: bad message %x", line, m)
		}
	})
}
