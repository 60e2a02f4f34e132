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

    public static void Save(string path, TrainingOptions options, long step, TrainingEngine engine) =>
        ChecksummedFile.Write(path, Magic, stream =>
        {
            using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            writer.Write(JsonSerializer.Serialize(new CheckpointHeader(options, step, DateTimeOffset.UtcNow)));
            engine.SaveState(writer);
        });

    /// <summary>Reads and verifies the header; the caller builds an engine from it and calls <see cref="Restore"/>.</summary>
    public static CheckpointHeader ReadHeader(string path)
    {
        using var reader = Open(path);
        return Header(reader, path);
    }

    /// <summary>Loads the checkpoint's tensors into an engine built from its header's options.</summary>
    public static CheckpointHeader Restore(string path, TrainingEngine engine)
    {
        using var reader = Open(path);
        var header = Header(reader, path);
        try { engine.LoadState(reader); }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException or ArgumentException)
        {
            throw new CorruptFileException($"checkpoint '{path}' does not match its own configuration: {e.Message}");
        }
        return header;
    }

    static BinaryReader Open(string path) =>
        new(new MemoryStream(ChecksummedFile.Read(path, Magic, "checkpoint")), Encoding.UTF8);

    static CheckpointHeader Header(BinaryReader reader, string path) =>
        JsonSerializer.Deserialize<CheckpointHeader>(reader.ReadString())
        ?? throw new CorruptFileException($"checkpoint '{path}' has an empty header");
}

/// <summary>
/// The checkpoints of one run in a folder: <c>checkpoint-STEP.ccc</c>, the newest few kept. Loading takes the newest
/// that verifies and says which damaged ones it passed over, so a crash during a write never costs more than that write.
/// </summary>
public sealed class CheckpointStore(string folder, int keep = 2)
{
    public string Folder { get; } = folder;

    public string PathFor(long step) => Path.Combine(Folder, $"checkpoint-{step:D9}.ccc");

    public string Save(TrainingOptions options, long step, TrainingEngine engine)
    {
        string path = PathFor(step);
        Checkpoint.Save(path, options, step, engine);
        foreach (var old in List().Skip(keep)) File.Delete(old);
        return path;
    }

    /// <summary>Checkpoint files, newest first.</summary>
    public IReadOnlyList<string> List() =>
        Directory.Exists(Folder)
            ? Directory.GetFiles(Folder, "checkpoint-*.ccc").OrderDescending(StringComparer.Ordinal).ToList()
            : [];

    /// <summary>The newest checkpoint whose header verifies, warning about each newer one that does not; null if none.</summary>
    public string? Latest(Action<string> warn)
    {
        foreach (var path in List())
        {
            try
            {
                Checkpoint.ReadHeader(path);
                return path;
            }
            catch (CorruptFileException e)
            {
                warn($"skipping damaged checkpoint: {e.Message}");
            }
        }
        return null;
    }
}
