"""Mutation testing (``make mutate``) of the code where a silent bug loses or mixes user data: mutmut over
each target of ``tools.mutate.main.TARGETS`` with only the test files mapped to it, in a workspace under
var/mutate/ exported from the commit (the working tree is never touched). Results: docs/results/mutation.md.
"""
