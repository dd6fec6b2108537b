"""UNIK encoder, projection heads, memory queue, cluster-guided losses and exact DBSCAN."""
