"""The workflow DSL: Python objects that compile to `kaon.v1.WorkflowDefinition`.

The DSL only builds; every rule about what is valid lives in core (WorkflowService.Validate).
"""
