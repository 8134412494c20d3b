// Tells the trigger manager when a workflow's active version may have changed. WorkflowService
// is the one writer of workflows, so the composition root wraps it: after a deploy, activate or
// delete succeeds, the manager re-reads that workflow before the call returns — a client that
// deploys and then lists triggers (or waits for a cron fire) sees the new version's triggers.
import type { WorkflowServiceImpl } from "../api/workflow-service.js";

export function refreshTriggersOnChange(
  service: WorkflowServiceImpl,
  refresh: (workflowId: string) => Promise<void>,
): WorkflowServiceImpl {
  return {
    ...service,
    async deploy(request, context) {
      const response = await service.deploy(request, context);
      await refresh(response.version?.workflowId ?? request.definition?.id ?? "");
      return response;
    },
    async activate(request, context) {
      const response = await service.activate(request, context);
      await refresh(request.workflowId);
      return response;
    },
    async deleteWorkflow(request, context) {
      const response = await service.deleteWorkflow(request, context);
      await refresh(request.workflowId);
      return response;
    },
  };
}
