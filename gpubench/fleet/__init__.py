"""Many nodes: Slurm runs the same `gpubench run` on each node (launch, node), the exports are
merged into one history and every node is judged against its identical peers and the rules
(collect, peers, rules, judge); `gpubench run --profile health` is the quick pass/fail of one
node (health)."""
