using System.Text;
using System.Text.Json;
using CondenseCluster.Shared.Storage;

namespace CondenseCluster.Shared.Training;

/// <summary>What a checkpoint says about itself; the tensors follow it in the file.</summary>
public sealed record CheckpointHeader(TrainingOptions Options, long Step, DateTimeOffset Written);

/// <summary>
/// A training checkpoint: the job configuration, the global step (which fixes epoch, data position and every random
/// draw, all derived from (seed, epoch, step, sample index)), weights, masks, BN statistics and momentum. Written
/// atomically with a checksum (<see cref="ChecksummedFile"/>), verified on load.
/// </summary>
public static class Checkpoint
{
    static readonly byte[] Magic = "CCCKPT01"u8.ToArray();

    /// <summary>Writes a checkpoint; <paramref name="writeState"/> writes the replica state (<see cref="TrainingEngine.SaveState"/>'s format).</summary>
    public static void Save(string path, TrainingOptions options, long step, Action<BinaryWriter> writeState) =>
        ChecksummedFile.Write(path, Magic, stream =>
        {
            using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            writer.Write(JsonSerializer.Serialize(new CheckpointHeader(options, step, DateTimeOffset.UtcNow)));
            writeState(writer);
        });

    /// <summary>Reads and verifies a checkpoint once; build an engine from its header, then <see cref="LoadedCheckpoint.Restore"/>.</summary>
    public static LoadedCheckpoint Read(string path)
    {
        var reader = new BinaryReader(new MemoryStream(ChecksummedFile.Read(path, Magic, "checkpoint")), Encoding.UTF8);
        var header = JsonSerializer.Deserialize<CheckpointHeader>(reader.ReadString())
            ?? throw new CorruptFileException($"checkpoint '{path}' has an empty header");
        return new LoadedCheckpoint(path, header, reader);
    }
}

/// <summary>A verified checkpoint in memory: its header, and its tensors ready to load.</summary>
public sealed class LoadedCheckpoint(string path, CheckpointHeader header, BinaryReader tensors)
{
    public string Path { get; } = path;
    public CheckpointHeader Header { get; } = header;

    /// <summary>The tensors as <see cref="TrainingEngine.SaveState"/> wrote them, for a replica elsewhere; instead of <see cref="Restore"/>.</summary>
    public byte[] ReadState()
    {
        using (tensors) return tensors.ReadBytes((int)(tensors.BaseStream.Length - tensors.BaseStream.Position));
    }

    /// <summary>Loads the tensors into an engine built from <see cref="Header"/>'s options; once.</summary>
    public void Restore(TrainingEngine engine)
    {
        using (tensors)
        {
            try { engine.LoadState(tensors); }
            catch (Exception e) when (e is InvalidDataException or EndOfStreamException or ArgumentException)
            {
                throw new CorruptFileException($"checkpoint '{Path}' does not match its own configuration: {e.Message}");
            }
        }
    }
}

/// <summary>
/// The checkpoints of one run in a folder: <c>checkpoint-STEP.ccc</c>, the newest few kept. Loading takes the newest
/// that verifies and says which damaged ones it passed over, so a crash during a write never costs more than that write.
/// </summary>
public sealed class CheckpointStore(string folder, int keep = 2)
{
    public string Folder { get; } = folder;

    /// <summary>The checkpoints of the run whose output folder is <paramref name="runFolder"/>: its <c>checkpoints/</c>.</summary>
    public static CheckpointStore OfRun(string runFolder) => new(System.IO.Path.Combine(runFolder, "checkpoints"));

    /// <summary>Does the store hold a checkpoint file (verified or not)?</summary>
    public bool Any => List().Count > 0;

    public string PathFor(long step) => Path.Combine(Folder, $"checkpoint-{step:D9}.ccc");

    public string Save(TrainingOptions options, long step, Action<BinaryWriter> writeState)
    {
        string path = PathFor(step);
        Checkpoint.Save(path, options, step, writeState);
        foreach (var old in List().Skip(keep)) File.Delete(old);
        return path;
    }

    /// <summary>
    /// The checkpoint that <c>--resume</c> names: a file, or the newest valid one in a run folder or checkpoint folder;
    /// null when nothing is to be resumed.
    /// </summary>
    public static LoadedCheckpoint? Resolve(string? from, Action<CheckpointSkipped> warn)
    {
        if (from is null) return null;
        if (File.Exists(from)) return Checkpoint.Read(from);
        if (Directory.Exists(from))
        {
            var run = OfRun(from);
            var store = Directory.Exists(run.Folder) ? run : new CheckpointStore(from);
            return store.Latest(warn) ?? throw new FileNotFoundException($"no valid checkpoint in '{store.Folder}' to resume from");
        }
        throw new FileNotFoundException($"--resume '{from}' is neither a checkpoint file nor a folder");
    }

    /// <summary>Checkpoint files, newest first.</summary>
    public IReadOnlyList<string> List() =>
        Directory.Exists(Folder)
            ? Directory.GetFiles(Folder, "checkpoint-*.ccc").OrderDescending(StringComparer.Ordinal).ToList()
            : [];

    /// <summary>The newest checkpoint that verifies, warning about each newer one that does not; null if none.</summary>
    public LoadedCheckpoint? Latest(Action<CheckpointSkipped> warn)
    {
        foreach (var path in List())
        {
            try
            {
                return Checkpoint.Read(path);
            }
            catch (CorruptFileException e)
            {
                warn(new CheckpointSkipped(path, e.Message));
            }
        }
        return null;
    }
}
