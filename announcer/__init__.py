"""announcer: keep a Kubernetes apiserver VIP announced over BGP exactly while the local
apiserver is ready."""

__version__ = "0.1.0"
