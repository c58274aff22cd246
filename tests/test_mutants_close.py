"""Mutation-killing tests of execution (close): being written."""
