"""Mutation-killing tests of execution (submit): being written."""
