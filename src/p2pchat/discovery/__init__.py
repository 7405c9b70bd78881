"""Peer discovery: how a node finds peers, as Trio tasks feeding the host's peer store.

``discovery.mdns`` runs the sans-IO mDNS core (``protocols.mdns``) on a UDP socket in the
caller's nursery (specs/mdns.md); ``discovery.bootstrap`` keeps configured and previously known
peers connected. Importing this package loads neither: import the module you need.
"""
