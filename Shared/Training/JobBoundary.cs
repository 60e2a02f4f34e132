namespace CondenseCluster.Shared.Training;

/// <summary>What happens at a step boundary, in the order <see cref="JobSchedule.BoundariesAt"/> lists them.</summary>
public enum JobBoundary { Condense, Evaluate, Checkpoint, Run, Finish }
