using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;

namespace CondenseCluster.Coordinator.Job;

// The results of the job's background work, as they come back to TrainingJob.Handle.

/// <summary>Background work of the job ended; <paramref name="Attempt"/> tells results of an interrupted attempt apart.</summary>
sealed record WorkDone(int Attempt, object Result);
sealed record WorkFailed(int Attempt, string What, string Error);
sealed record StatesLoaded(IReadOnlyList<(string Worker, string Checksum)> Checksums);
sealed record StateFetched(byte[] State);
sealed record MasksRead(IReadOnlyList<LayerMask> Masks);
sealed record WorkersGone(IReadOnlyList<string> Workers);
sealed record CheckpointSaved(string Path, long Step);
sealed record CheckpointFailed(string Error, long Step);
/// <summary>The checkpoint a graceful stop waits for is on disk.</summary>
sealed record StopCheckpointed(string Path, long Step);
sealed record JobCompleted(TrainingSummary Summary);
