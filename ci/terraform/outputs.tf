output "ruleset_id" {
  description = "The ruleset's id: `terraform import github_repository_ruleset.default_branch REPOSITORY:ID` adopts it elsewhere."
  value       = github_repository_ruleset.default_branch.ruleset_id
}

output "ruleset_node_id" {
  description = "The ruleset's GraphQL node id."
  value       = github_repository_ruleset.default_branch.node_id
}

output "required_checks" {
  description = "The status checks the default branch requires."
  value       = var.required_checks
}
