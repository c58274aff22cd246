"""Mutation-killing tests of execution (entry): being written."""
