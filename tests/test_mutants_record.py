"""Mutation-killing tests of execution (record): being written."""
