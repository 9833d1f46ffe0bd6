// Package deploy holds the deploy kit: the Nomad jobspecs (docker, and
// exec or raw_exec from the release tarball), Vector's configurations, the
// Dockerfile, the ACL policy and the systemd unit. It has no code: its
// tests parse every file the way Nomad and Vector would, since nothing
// here runs them, so that a kit nobody ran cannot rot.
package deploy
