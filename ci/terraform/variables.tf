variable "owner" {
  description = "The GitHub user or organisation that owns the repository."
  type        = string
}

variable "repository" {
  description = "The repository's name, without the owner."
  type        = string
}

variable "required_checks" {
  description = "Status checks a pull request must pass: the job ids of .github/workflows/ci.yml, as GitHub reports them (a job without `name:` reports its id)."
  type        = list(string)
  default     = ["ci"]

  validation {
    condition     = length(var.required_checks) > 0
    error_message = "A ruleset's required_status_checks needs at least one check."
  }
}

variable "required_approvals" {
  description = "Approving reviews a pull request needs."
  type        = number
  default     = 1

  validation {
    condition     = var.required_approvals >= 0 && var.required_approvals <= 10
    error_message = "required_approvals must be between 0 and 10."
  }
}

variable "checks_integration_id" {
  description = "The GitHub App whose checks count: 15368 is GitHub Actions, so no other app can post a passing check under the same name."
  type        = number
  default     = 15368
}
