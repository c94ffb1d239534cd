"""Reading the node: everything under `--host-root` and the runtimes' processes, never the network.

The node's resolvers and hosts file, its trust store and containerd's certs.d, the registries and
mirrors its runtimes are configured for, and each runtime's proxy settings, parsed by pure
functions into plain values. Nothing here imports the checks.
"""
