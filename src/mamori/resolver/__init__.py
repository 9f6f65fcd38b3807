"""The DNS service: listeners, query pipeline, cache, upstreams, ACL, events."""
