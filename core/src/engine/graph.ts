// Compiles a workflow definition into the executable graph the engine walks: per graph level
// (the top level and each container's body) the nodes in definition order with their
// predecessor edges, successor edges and join/split modes. Compiled once per workflow
// version and shared by every run of it, so a run's per-step state holds only what changes.
import { JoinMode, SplitMode, type Step, type WorkflowDefinition } from "@kaon/proto";

export type NodeKind = "task" | "foreach" | "loop" | "subworkflow";

export interface Edge {
  /** Index of the target node in the same graph. */
  to: number;
  /** Position of this edge in the source step's `next` list. */
  index: number;
  condition: string;
  otherwise: boolean;
}

export interface GraphNode {
  /** Position in its graph (definition order). */
  index: number;
  id: string;
  step: Step;
  kind: NodeKind;
  /** Number of incoming edges. */
  inDegree: number;
  succs: Edge[];
  split: "and" | "xor";
  join: "all" | "any";
  /** Foreach and loop bodies. */
  body?: Graph;
  /** Every node reachable from this one in the same graph (for restart from a step). */
  downstream?: Set<number>;
}

export interface Graph {
  nodes: GraphNode[];
  byId: Map<string, GraphNode>;
  /** Nodes without incoming edges: they start when the graph starts. */
  roots: number[];
  /** Nodes without outgoing edges: their outputs are the graph's outputs. */
  sinks: number[];
}

function kindOf(step: Step): NodeKind {
  switch (step.type) {
    case "foreach":
      return "foreach";
    case "loop":
      return "loop";
    case "subworkflow":
      return "subworkflow";
    default:
      return "task";
  }
}

export class GraphError extends Error {}

export function compileSteps(steps: Step[], where: string): Graph {
  const nodes: GraphNode[] = [];
  const byId = new Map<string, GraphNode>();
  steps.forEach((step, index) => {
    if (byId.has(step.id)) throw new GraphError(`${where}: duplicate step id '${step.id}'`);
    const kind = kindOf(step);
    const node: GraphNode = {
      index,
      id: step.id,
      step,
      kind,
      inDegree: 0,
      succs: [],
      split: step.split === SplitMode.SPLIT_MODE_XOR ? "xor" : "and",
      join: step.join === JoinMode.JOIN_MODE_ANY ? "any" : "all",
    };
    if (kind === "foreach")
      node.body = compileSteps(step.foreach?.body ?? [], `${where}.${step.id}`);
    if (kind === "loop") node.body = compileSteps(step.loop?.body ?? [], `${where}.${step.id}`);
    nodes.push(node);
    byId.set(step.id, node);
  });
  for (const node of nodes) {
    node.step.next.forEach((t, i) => {
      const target = byId.get(t.to);
      if (!target) throw new GraphError(`${where}.${node.id}: unknown successor '${t.to}'`);
      node.succs.push({
        to: target.index,
        index: i,
        condition: t.condition,
        otherwise: t.otherwise,
      });
      target.inDegree++;
    });
  }
  const roots = nodes.filter((n) => n.inDegree === 0).map((n) => n.index);
  if (nodes.length > 0 && roots.length === 0) {
    throw new GraphError(`${where}: every step has a predecessor, so nothing can start (a cycle)`);
  }
  const sinks = nodes.filter((n) => n.succs.length === 0).map((n) => n.index);
  const graph: Graph = { nodes, byId, roots, sinks };
  checkAcyclic(graph, where);
  return graph;
}

function checkAcyclic(graph: Graph, where: string): void {
  const state = new Uint8Array(graph.nodes.length); // 0 new, 1 on stack, 2 done
  const visit = (i: number): void => {
    state[i] = 1;
    for (const e of graph.nodes[i]?.succs ?? []) {
      if (state[e.to] === 1) {
        throw new GraphError(`${where}: cycle through step '${graph.nodes[e.to]?.id}'`);
      }
      if (state[e.to] === 0) visit(e.to);
    }
    state[i] = 2;
  };
  for (let i = 0; i < graph.nodes.length; i++) if (state[i] === 0) visit(i);
}

/** Every node reachable from `start` (inclusive), in the same graph. */
export function downstreamOf(graph: Graph, start: number): Set<number> {
  const node = graph.nodes[start];
  if (node?.downstream) return node.downstream;
  const seen = new Set<number>([start]);
  const stack = [start];
  while (stack.length > 0) {
    const i = stack.pop() as number;
    for (const e of graph.nodes[i]?.succs ?? []) {
      if (!seen.has(e.to)) {
        seen.add(e.to);
        stack.push(e.to);
      }
    }
  }
  if (node) node.downstream = seen;
  return seen;
}

const cache = new WeakMap<WorkflowDefinition, Graph>();

/** The compiled top-level graph of a definition (cached per definition object). */
export function compileWorkflow(def: WorkflowDefinition): Graph {
  let graph = cache.get(def);
  if (!graph) {
    graph = compileSteps(def.steps, "steps");
    cache.set(def, graph);
  }
  return graph;
}

/** Sort-key fragment for a node index (graph order) — fixed width so text order is numeric. */
export function nodeKey(index: number): string {
  return index.toString(36).padStart(3, "0");
}

/** Sort-key fragment for an iteration number. */
export function iterationKey(n: number): string {
  return n.toString(36).padStart(5, "0");
}
