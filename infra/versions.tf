terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
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
