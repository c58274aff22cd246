"""Mutation-killing tests of execution (resolve): being written."""
