"""The lab: the containerlab topology realised with network namespaces and host FRR, a fake
kube-apiserver, and the demo. The daemon never imports this package."""
