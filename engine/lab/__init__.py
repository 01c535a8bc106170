"""The lab: real target hosts (sshd in namespaces on 127.0.0.0/8) and a Pebble ACME server."""
