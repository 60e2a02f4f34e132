using CondenseCluster.Shared.Data;
using SkiaSharp;
using Xunit;
using static CondenseCluster.Tests.Data.DataTestFiles;

namespace CondenseCluster.Tests.Data;

public class ImageFolderDatasetTests : IDisposable
{
    const int Size = 224, Plane = Size * Size;
    static readonly float[] Mean = [0.485f, 0.456f, 0.406f], Std = [0.229f, 0.224f, 0.225f];
    static readonly SKColor Solid = new(200, 100, 50);
    readonly string root = Directory.CreateTempSubdirectory("cc-imagefolder-").FullName;

    public ImageFolderDatasetTests()
    {
        // Classes sort as ant, cat, dog (ordinal), whatever order they are written in.
        WriteJpeg(Path.Combine(root, "train", "dog", "b.JPEG"), 120, 90, (x, y) => new SKColor((byte)x, (byte)y, 30));
        WriteJpeg(Path.Combine(root, "train", "dog", "a.JPEG"), 60, 100, (_, _) => Solid);
        WriteJpeg(Path.Combine(root, "train", "cat", "c.jpg"), 300, 200, (x, _) => x < 150 ? SKColors.Red : SKColors.Blue);
        WriteJpeg(Path.Combine(root, "train", "ant", "d.JPEG"), 40, 40, (x, y) => new SKColor((byte)(5 * x), 0, (byte)(5 * y)));
        File.WriteAllText(Path.Combine(root, "train", "ant", "notes.txt"), "not an image");
        WriteJpeg(Path.Combine(root, "val", "ant", "e.JPEG"), 64, 48, (_, _) => Solid);
        WriteJpeg(Path.Combine(root, "val", "cat", "f.JPEG"), 48, 64, (_, _) => SKColors.Gray);
        WriteJpeg(Path.Combine(root, "val", "dog", "g.JPEG"), 50, 50, (_, _) => SKColors.White);
    }

    public void Dispose() => Directory.Delete(root, recursive: true);

    static float[] Read(IImageDataset dataset, int index, Random? augmentation)
    {
        var image = new float[3 * Plane];
        dataset.Read(index, image, augmentation);
        return image;
    }

    [Fact]
    public void LabelsComeFromTheSortedClassFoldersAndImagesAre3x224x224()
    {
        var (train, val) = ImageFolderDataset.Open(root);
        Assert.Equal(["ant", "cat", "dog"], train.ClassNames);
        Assert.Equal((4, 3, 3, 3, Size), (train.Count, val.Count, train.NumClasses, train.Channels, train.Size));
        Assert.Equal([0, 1, 2, 2], Enumerable.Range(0, 4).Select(train.Label));
        Assert.Equal([0, 1, 2], Enumerable.Range(0, 3).Select(val.Label));
        Assert.Contains("4 images in 3 classes", train.Description);
        Assert.Throws<ArgumentException>(() => train.Read(0, new float[3 * Plane - 1], null));
    }

    [Fact]
    public void TheEvaluationTransformOfASolidColourGivesTheNormalisedColour()
    {
        var (train, val) = ImageFolderDataset.Open(root);
        foreach (var (dataset, index) in new[] { (train, 2), (val, 0) })
        {
            float[] image = Read(dataset, index, null);
            byte[] rgb = [Solid.Red, Solid.Green, Solid.Blue];
            for (int c = 0; c < 3; c++)
            {
                float expected = Normalized(rgb[c], Mean[c], Std[c]);
                // JPEG's colour conversion may move a solid colour by a level or two.
                Assert.All(image.AsSpan(c * Plane, Plane).ToArray(), value => Assert.InRange(value, expected - 3 / 255f / Std[c], expected + 3 / 255f / Std[c]));
            }
        }
    }

    [Fact]
    public void LargeImagesAreReducedWhileDecodingOrThroughMipmapsAndKeepTheirColour()
    {
        // The JPEG is reduced by the decoder (3/8 here); PNG cannot be, so its 4x reduction goes through mipmaps.
        string folder = Path.Combine(root, "large");
        WriteJpeg(Path.Combine(folder, "jpeg", "big.JPEG"), 1200, 900, (_, _) => Solid);
        using (var bitmap = new SKBitmap(1000, 1000))
        {
            bitmap.Erase(Solid);
            using var png = bitmap.Encode(SKEncodedImageFormat.Png, 100);
            Directory.CreateDirectory(Path.Combine(folder, "png"));
            File.WriteAllBytes(Path.Combine(folder, "png", "big.png"), png.ToArray());
        }
        var dataset = new ImageFolderDataset("large", folder, ["jpeg", "png"]);
        byte[] rgb = [Solid.Red, Solid.Green, Solid.Blue];
        for (int index = 0; index < 2; index++)
            foreach (var augmentation in new[] { null, new Random(index) })
            {
                float[] image = Read(dataset, index, augmentation);
                for (int c = 0; c < 3; c++)
                {
                    float expected = Normalized(rgb[c], Mean[c], Std[c]), tolerance = (index == 0 ? 3 : 0.5f) / 255f / Std[c];
                    Assert.All(image.AsSpan(c * Plane, Plane).ToArray(), value => Assert.InRange(value, expected - tolerance, expected + tolerance));
                }
            }
    }

    [Fact]
    public void TheSameSeedGivesTheSameAugmentedImageAndOtherSeedsOtherCrops()
    {
        var (train, _) = ImageFolderDataset.Open(root);
        float[] first = Read(train, 0, new Random(7));
        Assert.Equal(first, Read(train, 0, new Random(7)));
        Assert.Contains(Enumerable.Range(8, 5), seed => !Read(train, 0, new Random(seed)).SequenceEqual(first));
        Assert.NotEqual(Read(train, 0, null), first);
    }

    [Fact]
    public void TheAugmentedCropAndFlipFollowTheGenerator()
    {
        // cat/c.jpg is red left of x = 150 and blue right of it; the output's left column shows the crop's left edge,
        // or its right edge when flipped.
        var (train, _) = ImageFolderDataset.Open(root);
        int checkedSeeds = 0;
        for (int seed = 0; seed < 60 && checkedSeeds < 12; seed++)
        {
            var draws = new Random(seed);
            var box = ImageTransforms.RandomResizedCrop(draws, 300, 200);
            bool flip = ImageTransforms.RandomFlip(draws);
            double edge = flip ? box.X + box.Width : box.X;
            if (Math.Abs(edge - 150) < 12) continue;
            checkedSeeds++;

            float[] image = Read(train, 1, new Random(seed));
            bool red = edge < 150;
            float redChannel = image[0 * Plane + 112 * Size], blueChannel = image[2 * Plane + 112 * Size];
            Assert.True(red ? redChannel > 1 && blueChannel < 0 : redChannel < 0 && blueChannel > 1, $"seed {seed}: box {box}, flip {flip}");
        }
        Assert.Equal(12, checkedSeeds);
    }

    [Fact]
    public void ACorruptOrTruncatedJpegIsRefusedNamingTheFile()
    {
        string garbage = Path.Combine(root, "train", "cat", "z-garbage.JPEG");
        File.WriteAllText(garbage, "this is not a JPEG");
        string truncated = Path.Combine(root, "train", "cat", "z-truncated.JPEG");
        byte[] jpeg = File.ReadAllBytes(Path.Combine(root, "train", "cat", "c.jpg"));
        File.WriteAllBytes(truncated, jpeg[..(jpeg.Length / 2)]);

        var (train, _) = ImageFolderDataset.Open(root);
        Assert.Equal(6, train.Count);
        foreach (var (index, path) in new[] { (2, garbage), (3, truncated) })
        {
            var error = Assert.Throws<DataFormatException>(() => Read(train, index, null));
            Assert.Contains($"'{path}'", error.Message);
        }
    }

    [Fact]
    public void ValWithOtherClassesIsAnError()
    {
        Directory.Move(Path.Combine(root, "val", "dog"), Path.Combine(root, "val", "wolf"));
        var error = Assert.Throws<DataFormatException>(() => ImageFolderDataset.Open(root));
        Assert.Contains("missing in val: [dog]", error.Message);
        Assert.Contains("not in train: [wolf]", error.Message);
    }

    [Fact]
    public void AMissingSplitFolderIsNamed()
    {
        Directory.Delete(Path.Combine(root, "val"), recursive: true);
        var error = Assert.Throws<DirectoryNotFoundException>(() => ImageFolderDataset.Open(root));
        Assert.Contains($"'{Path.Combine(root, "val")}' does not exist", error.Message);
    }
}
