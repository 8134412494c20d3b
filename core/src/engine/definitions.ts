// Adapts the model's WorkflowRepo (canonical JSON rows) to the engine's DefinitionSource:
// loads a version and decodes its definition once; versions are immutable, so decoded
// definitions are cached by (workflow, version) for the life of the process.
import { messageFromJson, WorkflowDefinition } from "@kaon/proto";
import type { WorkflowRepo } from "../store/workflow-repo.js";
import type { DefinitionSource } from "./engine.js";

export function workflowRepoDefinitions(repo: WorkflowRepo): DefinitionSource {
  const cache = new Map<string, WorkflowDefinition>();
  return {
    async load(workflowId, selector) {
      const found = await repo.getVersion(workflowId, selector);
      const version = found?.version;
      if (!found || !version) return undefined;
      const key = `${workflowId}@${version.version}`;
      let definition = cache.get(key);
      if (!definition) {
        if (version.definitionJson === undefined) return undefined;
        definition = messageFromJson(
          WorkflowDefinition,
          "kaon.v1.WorkflowDefinition",
          JSON.parse(version.definitionJson),
          { ignoreUnknownFields: true },
        );
        cache.set(key, definition);
      }
      return { version: version.version, namespace: found.workflow.namespace, definition };
    },
  };
}
