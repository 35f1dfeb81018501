terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.27 added aws_cloudwatch_event_rule.state (schedule.tf).
      version = "~> 5.27"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(
      {
        Project   = "tributary"
        Stack     = var.name
        ManagedBy = "terraform"
      },
      var.tags,
    )
  }
}
