"""Dendro job model, hash, client, self-hosted service and compute resource."""
