module github.com/bagpipe-go/bagpipe

go 1.26.8

require (
	github.com/osrg/gobgp/v4 v4.8.0
	github.com/vishvananda/netlink v1.3.1
	github.com/vishvananda/netns v0.0.5
	go.uber.org/goleak v1.3.0
	golang.org/x/sys v0.45.0
	gopkg.in/ini.v1 v1.67.3
)
