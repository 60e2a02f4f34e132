using System.Globalization;

namespace CondenseCluster.Shared.Data;

/// <summary>
/// CIFAR-10 and CIFAR-100 in the official binary format: records of label byte(s) followed by 3072 pixel bytes (the
/// 32x32 R plane, then G, then B). CIFAR-100 records carry a coarse and a fine label; the fine one (100 classes) is used.
/// Training augmentation: RandomCrop(32, padding 4) + horizontal flip.
/// </summary>
public static class CifarBinary
{
    public const int Size = 32, ImageBytes = 3 * Size * Size, CropPadding = 4;

    /// <summary>One label byte of a record: its name and how many classes it counts. The last one is the sample's label.</summary>
    sealed record LabelField(string Name, int NumClasses);

    sealed record Variant(string Name, string DisplayName, string Subfolder, string[] TrainFiles, string[] TestFiles,
        LabelField[] LabelFields, Normalization Normalization)
    {
        public int RecordLength => LabelFields.Length + ImageBytes;
        public int NumClasses => LabelFields[^1].NumClasses;
    }

    static readonly Variant Cifar10 = new("cifar10", "CIFAR-10", "cifar-10-batches-bin",
        ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"], ["test_batch.bin"],
        [new("label", 10)], Normalization.Cifar10);

    static readonly Variant Cifar100 = new("cifar100", "CIFAR-100", "cifar-100-binary", ["train.bin"], ["test.bin"],
        [new("coarse label", 20), new("fine label", 100)], Normalization.Cifar100);

    /// <summary>The batches in <paramref name="directory"/> or in its <c>cifar-10-batches-bin</c> subfolder.</summary>
    public static (InMemoryImageDataset Train, InMemoryImageDataset Test) OpenCifar10(string directory) => Open(Cifar10, directory);

    /// <summary>The files in <paramref name="directory"/> or in its <c>cifar-100-binary</c> subfolder.</summary>
    public static (InMemoryImageDataset Train, InMemoryImageDataset Test) OpenCifar100(string directory) => Open(Cifar100, directory);

    static (InMemoryImageDataset Train, InMemoryImageDataset Test) Open(Variant variant, string directory)
    {
        string[] expected = [.. variant.TrainFiles, .. variant.TestFiles];
        string? folder = new[] { directory, Path.Combine(directory, variant.Subfolder) }
            .FirstOrDefault(candidate => expected.All(file => File.Exists(Path.Combine(candidate, file))));
        if (folder is null)
            throw new FileNotFoundException(
                $"{variant.DisplayName} not found in '{directory}'{(Directory.Exists(directory) ? "" : " (the folder does not exist)")}: " +
                $"expected {string.Join(", ", expected)} there or in '{Path.Combine(directory, variant.Subfolder)}' (the official binary version)");
        return (LoadSplit(variant, folder, "train", variant.TrainFiles), LoadSplit(variant, folder, "test", variant.TestFiles));
    }

    static InMemoryImageDataset LoadSplit(Variant variant, string folder, string split, string[] files)
    {
        var contents = files.Select(file => CheckedRecords(variant, Path.Combine(folder, file))).ToList();
        int count = contents.Sum(bytes => bytes.Length / variant.RecordLength);
        byte[] pixels = new byte[count * ImageBytes], labels = new byte[count];
        int sample = 0;
        foreach (byte[] bytes in contents)
            for (int offset = 0; offset < bytes.Length; offset += variant.RecordLength, sample++)
            {
                labels[sample] = bytes[offset + variant.LabelFields.Length - 1];
                bytes.AsSpan(offset + variant.LabelFields.Length, ImageBytes).CopyTo(pixels.AsSpan(sample * ImageBytes));
            }

        string description = string.Create(CultureInfo.InvariantCulture,
            $"{variant.Name} {split}: {count:N0} images from {folder} ({string.Join(", ", files)})");
        return new InMemoryImageDataset(description, pixels, labels, variant.NumClasses, Size, Size, variant.Normalization, CropPadding);
    }

    /// <summary>The file's bytes, after checking that it is whole records with labels in range.</summary>
    static byte[] CheckedRecords(Variant variant, string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        int recordLength = variant.RecordLength;
        if (bytes.Length == 0)
            throw new DataFormatException($"'{path}' is empty; a {variant.DisplayName} batch holds records of {recordLength} bytes");
        if (bytes.Length % recordLength != 0)
        {
            int complete = bytes.Length / recordLength;
            throw new DataFormatException(
                $"'{path}' is truncated: {bytes.Length} bytes is not a whole number of {recordLength}-byte {variant.DisplayName} records; " +
                $"record {complete} (offset {(long)complete * recordLength}) has only {bytes.Length - complete * recordLength} bytes");
        }
        for (int record = 0; record < bytes.Length / recordLength; record++)
            for (int field = 0; field < variant.LabelFields.Length; field++)
            {
                long offset = (long)record * recordLength + field;
                var (name, numClasses) = variant.LabelFields[field];
                if (bytes[offset] >= numClasses)
                    throw new DataFormatException(
                        $"'{path}': {name} {bytes[offset]} of record {record} (offset {offset}) is out of range; {variant.DisplayName} {name}s lie in 0..{numClasses - 1}");
            }
        return bytes;
    }
}
