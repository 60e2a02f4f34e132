using System.Buffers.Binary;
using System.IO.Compression;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;
using CondenseCluster.Shared.Storage.TensorBoard;
using CondenseCluster.Shared.Training;
using CondenseCluster.Tests.Data;
using Google.Protobuf;
using TorchSharp;
using Xunit;

namespace CondenseCluster.Tests.Storage;

public class TensorBoardEventsTests : TempFolderTest
{
    [Fact]
    public void Crc32CGivesTheStandardCheckValues()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute("123456789"u8));
        Assert.Equal(0x8A9136AAu, Crc32C.Compute(new byte[32])); // RFC 3720, B.4
        // ((0xE3069283 >> 15) | (0xE3069283 << 17)) + 0xA282EAD8, worked out by hand.
        Assert.Equal(0xC78AB0E5u, Crc32C.Masked("123456789"u8));
    }

    [Fact]
    public void WrittenScalarsReadBackWithTheirTagsStepsAndTimes()
    {
        var time = new DateTimeOffset(2024, 5, 6, 7, 8, 9, 250, TimeSpan.Zero);
        var before = DateTimeOffset.UtcNow;
        string path;
        using (var writer = new TensorBoardEventWriter(Path.Combine(Folder, "new", "run")))
        {
            path = writer.FilePath;
            writer.WriteScalars(1, [("train/loss", 2.5f), ("train/accuracy", 0.125f)], time);
            writer.WriteScalars(7, [("test/top1", 0.75f)], time.AddSeconds(1.5));
        }

        Assert.Matches($@"^events\.out\.tfevents\.\d+\.{System.Text.RegularExpressions.Regex.Escape(System.Net.Dns.GetHostName())}$", Path.GetFileName(path));
        var events = TensorBoardEventReader.Read(path);
        Assert.Equal(3, events.Count);
        Assert.Equal("brain.Event:2", events[0].FileVersion);
        Assert.InRange(events[0].WallTime, before.ToUnixTimeSeconds() - 1, DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 1);

        Assert.Equal(Event.WhatOneofCase.Summary, events[1].WhatCase);
        Assert.Equal(1, events[1].Step);
        Assert.Equal(time.ToUnixTimeMilliseconds() / 1000.0, events[1].WallTime, 6);
        Assert.Equal([("train/loss", 2.5f), ("train/accuracy", 0.125f)], events[1].Summary.Value.Select(v => (v.Tag, v.SimpleValue)));
        Assert.Equal(7, events[2].Step);
        Assert.Equal(time.ToUnixTimeMilliseconds() / 1000.0 + 1.5, events[2].WallTime, 6);
        Assert.Equal([("test/top1", 0.75f)], events[2].Summary.Value.Select(v => (v.Tag, v.SimpleValue)));
    }

    [Fact]
    public void ARunsEventsAreTextEntriesUnderTheirKindAtTheStepsDone()
    {
        string path;
        using (var log = new TensorBoardLog(Folder))
        {
            path = log.FilePath;
            log.Step(new StepMetrics(2, 0, 1.5, 0.5, 0.1, 0, 3, 10, 100, 90, 1));
            log.Event(new CheckpointWritten("run/checkpoints/checkpoint-000000003.ccc", 3));
        }
        var text = TensorBoardEventReader.Read(path).Last().Summary.Value.Single();
        Assert.Equal(3, TensorBoardEventReader.Read(path).Last().Step);
        Assert.Equal(("events/checkpoint", "text", 7), (text.Tag, text.Metadata.PluginData.PluginName, text.Tensor.Dtype));
        Assert.Equal("checkpoint run/checkpoints/checkpoint-000000003.ccc", Assert.Single(text.Tensor.StringVal).ToStringUtf8());
        // Encoded by hand with TensorFlow's field numbers: Value.tag = 1 (0x0A), Value.tensor = 8 (0x42), Value.metadata = 9
        // (0x4A); TensorProto.dtype = 1 (0x08), tensor_shape = 2 (0x12), string_val = 8 (0x42); metadata.plugin_data = 1,
        // plugin_name = 1 (0x0A).
        byte[] line = [.. "checkpoint run/checkpoints/checkpoint-000000003.ccc"u8];
        byte[] tensor = [0x08, 7, 0x12, 0, 0x42, (byte)line.Length, .. line];
        byte[] metadata = [0x0A, 6, 0x0A, 4, .. "text"u8];
        byte[] tag = [.. "events/checkpoint"u8];
        Assert.Equal([0x0A, (byte)tag.Length, .. tag, 0x42, (byte)tensor.Length, .. tensor, 0x4A, (byte)metadata.Length, .. metadata], text.ToByteArray());
    }

    [Fact]
    public void RecordsAreFramedAsTfRecordsWithTensorFlowsFieldNumbers()
    {
        var time = new DateTimeOffset(2024, 5, 6, 7, 8, 9, TimeSpan.Zero);
        string path;
        using (var writer = new TensorBoardEventWriter(Folder))
        {
            path = writer.FilePath;
            writer.WriteScalars(3, [("a", 1f)], time);
        }
        byte[] bytes = File.ReadAllBytes(path);
        double started = TensorBoardEventReader.Read(path)[0].WallTime;

        // The events encoded by hand. Event: wall_time = field 1, fixed64 (tag 0x09); step = field 2, varint (0x10);
        // file_version = field 3, length-delimited (0x1A); summary = field 5 (0x2A). Summary.value = field 1 (0x0A);
        // Value.tag = field 1 (0x0A); simple_value = field 2, fixed32 (0x15).
        byte[] version = [0x09, .. Double(started), 0x1A, 13, .. "brain.Event:2"u8];
        byte[] value = [0x0A, 1, (byte)'a', 0x15, 0x00, 0x00, 0x80, 0x3F];
        byte[] scalar = [0x09, .. Double(time.ToUnixTimeSeconds()), 0x10, 3, 0x2A, (byte)(value.Length + 2), 0x0A, (byte)value.Length, .. value];
        Assert.Equal([.. Record(version), .. Record(scalar)], bytes);

        static byte[] Double(double d) { var b = new byte[8]; BinaryPrimitives.WriteDoubleLittleEndian(b, d); return b; }
    }

    /// <summary>A TFRecord built independently of the code under test: a bitwise CRC-32C, the mask, little endian.</summary>
    static byte[] Record(byte[] data)
    {
        byte[] length = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)data.Length);
        return [.. length, .. UInt32(MaskedCrc(length)), .. data, .. UInt32(MaskedCrc(data))];

        static byte[] UInt32(uint v) { var b = new byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); return b; }
        static uint MaskedCrc(byte[] bytes)
        {
            uint crc = 0xFFFFFFFF;
            foreach (byte b in bytes)
            {
                crc ^= b;
                for (int bit = 0; bit < 8; bit++) crc = (crc >> 1) ^ (0x82F63B78 & (0u - (crc & 1)));
            }
            crc = ~crc;
            return unchecked(((crc >> 15) | (crc << 17)) + 0xA282EAD8);
        }
    }

    [Fact]
    public void AFlippedByteIsDetectedWithItsRecord()
    {
        string path = ThreeRecords();
        byte[] good = File.ReadAllBytes(path);
        int second = RecordLength(good, 0), third = second + RecordLength(good, second);

        byte[] bytes = (byte[])good.Clone();
        bytes[second + 12 + 3] ^= 0x10;
        File.WriteAllBytes(path, bytes);
        var error = Assert.Throws<InvalidDataException>(() => TensorBoardEventReader.Read(path));
        Assert.Contains(path, error.Message);
        Assert.Contains($"record 2 at byte {second}: data CRC mismatch", error.Message);

        bytes = (byte[])good.Clone();
        bytes[third] ^= 0x01;
        File.WriteAllBytes(path, bytes);
        error = Assert.Throws<InvalidDataException>(() => TensorBoardEventReader.Read(path));
        Assert.Contains($"record 3 at byte {third}: length CRC mismatch", error.Message);
    }

    [Fact]
    public void ATruncatedFileIsDetectedWithItsRecord()
    {
        string path = ThreeRecords();
        byte[] good = File.ReadAllBytes(path);
        int third = RecordLength(good, 0) + RecordLength(good, RecordLength(good, 0));

        foreach (int keep in new[] { good.Length - 1, third + 20, third + 5 })
        {
            File.WriteAllBytes(path, good[..keep]);
            var error = Assert.Throws<InvalidDataException>(() => TensorBoardEventReader.Read(path));
            Assert.Contains(path, error.Message);
            Assert.Contains($"record 3 at byte {third}: truncated", error.Message);
        }
        File.WriteAllBytes(path, good[..third]);
        Assert.Equal(2, TensorBoardEventReader.Read(path).Count);
    }

    string ThreeRecords()
    {
        using var writer = new TensorBoardEventWriter(Folder);
        writer.WriteScalars(1, [("train/loss", 2.5f)]);
        writer.WriteScalars(2, [("train/loss", 2.25f), ("train/accuracy", 0.5f)]);
        return writer.FilePath;
    }

    static int RecordLength(byte[] file, int offset) => 12 + (int)BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(offset)) + 4;

    [Fact]
    public void SparsityIsTheFractionOfPrunedEntriesOverAllLayers()
    {
        string path;
        using (var log = new TensorBoardLog(Folder))
        {
            path = log.FilePath;
            ((ITrainingObserver)log).Masks(1, 16, [new LayerMask(1, new[,] { { true, false }, { false, false } }), new LayerMask(1, new bool[2, 3])]);
        }
        var sparsity = TensorBoardEventReader.Read(path)[1];
        Assert.Equal(16, sparsity.Step);
        Assert.Equal([("condensing/sparsity", 1 - 1 / 10f)], sparsity.Summary.Value.Select(v => (v.Tag, v.SimpleValue)));
    }

    [Fact]
    public void ATinyTrainingRunLeavesCurvesTensorBoardCanRead()
    {
        // 320 training images in batches of 64 make 5 steps an epoch: 5 steps reach an evaluation, in seconds.
        var options = new TrainingOptions
        {
            Arch = "tiny",
            Model = new CondenseNetConfig { Stages = [2, 2], Growth = [4, 8], InChannels = 1, InputSize = 32, NumClasses = 10 },
            Dataset = "fashion-mnist",
            DataDir = FashionMnistSubset(Path.Combine(Folder, "data"), train: 320, test: 128),
            BatchSize = 64,
            Epochs = 2,
            Seed = 7,
        };
        var run = new RunSettings { Device = torch.CPU, OutputFolder = Path.Combine(Folder, "run"), StopAfterStep = 5 };
        string path;
        using (var log = new TensorBoardLog(run.OutputFolder))
        {
            path = log.FilePath;
            LocalTraining.Run(options, run, new Observers(log));
        }

        var events = TensorBoardEventReader.Read(path); // checks every record's CRCs
        Assert.Equal("brain.Event:2", events[0].FileVersion);
        var scalars = events.Skip(1).SelectMany(e => e.Summary.Value.Select(v => (e.Step, v.Tag, v.SimpleValue))).ToList();
        Assert.Equal([1L, 2, 3, 4, 5], scalars.Where(s => s.Tag == "train/loss").Select(s => s.Step));
        foreach (string tag in new[] { "train/accuracy", "train/learning_rate", "train/images_per_second" })
            Assert.Equal(5, scalars.Count(s => s.Tag == tag));
        Assert.All(scalars.Where(s => s.Tag == "train/loss"), s => Assert.True(s.SimpleValue > 0 && float.IsFinite(s.SimpleValue)));
        foreach (string tag in new[] { "test/top1", "test/top5", "test/loss", "epoch/train_loss", "epoch/train_accuracy" })
            Assert.Equal(5, Assert.Single(scalars, s => s.Tag == tag).Step);
        Assert.InRange(Assert.Single(scalars, s => s.Tag == "test/top1").SimpleValue, 0f, 1f);
        // Of 10 steps (C = 4), steps 2 and 4 cross the condensing boundaries at progress 1/6 and 1/3: a quarter pruned each.
        Assert.Equal([(0L, 0f), (2, 0.25f), (4, 0.5f)], scalars.Where(s => s.Tag == "condensing/sparsity").Select(s => (s.Step, s.SimpleValue)));
    }

    /// <summary>The first images of the bundled Fashion-MNIST subset, as plain IDX files in <paramref name="folder"/>.</summary>
    static string FashionMnistSubset(string folder, int train, int test)
    {
        Directory.CreateDirectory(folder);
        foreach (var (split, count) in new[] { ("train", train), ("t10k", test) })
        {
            byte[] images = Gunzip($"{split}-images-idx3-ubyte"), labels = Gunzip($"{split}-labels-idx1-ubyte");
            File.WriteAllBytes(Path.Combine(folder, $"{split}-images-idx3-ubyte"), DataTestFiles.IdxImages(count, 28, 28, images[16..(16 + count * 28 * 28)]));
            File.WriteAllBytes(Path.Combine(folder, $"{split}-labels-idx1-ubyte"), DataTestFiles.IdxLabels(labels[8..(8 + count)]));
        }
        return folder;

        static byte[] Gunzip(string name)
        {
            using var gzip = new GZipStream(File.OpenRead(Path.Combine(BundledData.FashionMnistSubset, name + ".gz")), CompressionMode.Decompress);
            var bytes = new MemoryStream();
            gzip.CopyTo(bytes);
            return bytes.ToArray();
        }
    }
}
