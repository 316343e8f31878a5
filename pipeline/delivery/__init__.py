"""GitOps delivery: the Argo CD objects a repository deploys with, and their checks."""
