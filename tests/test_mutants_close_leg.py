"""Mutation-killing tests of execution (close_leg): being written."""
