# Protects the default branch with a repository ruleset: changes arrive by pull request with
# an approval and the CI checks passing, history stays linear, and the branch can be neither
# force-pushed nor deleted. Nobody bypasses it (no bypass_actors), administrators included.
resource "github_repository_ruleset" "default_branch" {
  name        = "protect-default-branch"
  repository  = var.repository
  target      = "branch"
  enforcement = "active"

  conditions {
    ref_name {
      include = ["~DEFAULT_BRANCH"]
      exclude = []
    }
  }

  rules {
    deletion                = true
    non_fast_forward        = true
    required_linear_history = true

    pull_request {
      required_approving_review_count   = var.required_approvals
      dismiss_stale_reviews_on_push     = true
      required_review_thread_resolution = true
    }

    required_status_checks {
      # The branch must be up to date with the default branch before merging.
      strict_required_status_checks_policy = true

      dynamic "required_check" {
        for_each = var.required_checks
        content {
          context        = required_check.value
          integration_id = var.checks_integration_id
        }
      }
    }
  }
}
