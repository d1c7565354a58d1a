package bus

import "github.com/nats-io/nats-server/v2/server"

// AgentPermissions are the NATS permissions of host's agent credential
// (control-plane §7.5): it may read its own desired state (the live
// subject and the last value in the stream), ask its own sync, report its
// own status and receive replies on its own inbox prefix (Subjects.Inbox,
// which Connect sets with ConnectOptions.Host). Nothing of another host
// is reachable: not its subjects, not the stream's other messages, not
// its replies.
func AgentPermissions(host string) (*server.Permissions, error) {
	s, err := HostSubjects(host)
	if err != nil {
		return nil, err
	}
	return &server.Permissions{
		Publish: &server.SubjectPermission{
			Allow: []string{s.Sync, s.Status, s.DirectGet},
		},
		Subscribe: &server.SubjectPermission{
			Allow: []string{s.Desired, s.Inbox + ".>"},
		},
	}, nil
}
