"""Docker Hub's pull rate limit: the sans-IO rules (`rules`), and the reader that asks
(`ratelimit`) through the node's connections."""
