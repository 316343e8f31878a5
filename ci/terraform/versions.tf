terraform {
  required_version = ">= 1.5.0"

  required_providers {
    github = {
      source  = "integrations/github"
      version = "~> 6.6"
    }
  }
}

# The token comes from the environment (GITHUB_TOKEN), never from a variable or a file here.
provider "github" {
  owner = var.owner
}
