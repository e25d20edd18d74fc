"""The Chinese edition's figure text: titles, axis labels, legends, hover text, slider labels.

Keys are the English text as a chapter or :mod:`densenet_edu` writes it, one line of it (a
text of several lines is translated line by line, see :func:`densenet_edu.figure_text.translate`);
values use the terms of the glossary in CONTRIBUTING.md ("Two languages"). Text with numbers
that code fills in is matched by :data:`ZH_PATTERNS`. ``tests/test_zh.py`` lists any figure
text of the built book that is still English, so a new title cannot slip through.
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: Words that stay in Latin letters in both editions: names, units, code and common terms.
KEEP_WORDS = frozenset(
    """
    DenseNet DenseBlock DenseLayer ResNet ImageNet CIFAR SVHN CNN PyTorch torchvision timm
    ONNX OpenVINO Runtime Huang et al He BN ReLU Conv conv GPU CPU MB GB KB MiB GiB ms
    MACs GMACs GFLOP GFLOPs TFLOP top acc eager autocast NCHW NHWC True False None BC kL
    """.split()
)

ZH: dict[str, str] = {
    # Chapter 1: the family and the paper's results
    "Deeper DenseNets: lower error, few parameters": "更深的 DenseNet：误差更低，参数很少",
    "ImageNet top-1 error (%)": "ImageNet top-1 误差（%）",
    "paper, Table 3 (single crop)": "论文表 3（单次裁剪）",
    "parameters (millions, counted with densenet_edu)": "参数（百万，用 densenet_edu 统计）",
    "torchvision's weights (100 - reported acc@1)": "torchvision 的权重（100 − 报告的 acc@1）",
    # Chapter 2: dense connectivity
    "each layer concatenates the maps it taps and adds k new ones": (
        "每层拼接它接入的特征图，并新增 k 个"
    ),
    "concatenate": "拼接",
    "Dense block, measured: who reads what": "稠密块实测：谁读入了什么",
    "layer": "层",
    "source feature map": "来源特征图",
    "Input width per layer: dense grows by k, residual stays fixed": (
        "每层的输入宽度：稠密连接每层增加 k，残差连接保持不变"
    ),
    "dense layer: $k_0 + k(\\ell-1)$, $k_0=4$, $k=2$": "稠密层：$k_0 + k(\\ell-1)$，$k_0=4$，$k=2$",
    "input channels (measured)": "输入通道数（实测）",
    "layer $\\ell$ in the block": "块中的第 $\\ell$ 层",
    # Chapter 3: channel growth
    "channels entering the layer": "进入该层的通道数",
    "dense layers in order (open circle: the block's output)": (
        "按顺序排列的稠密层（空心圆：块的输出）"
    ),
    "DenseNet-121's shape (blocks 6-12-24-16, stem 2k) with growth rate k": (
        "不同增长率 k 下 DenseNet-121 的形状（块 6-12-24-16，起始层 2k）"
    ),
    "Multiply-adds (one 224x224 image)": "乘加运算（一张 224x224 图像）",
    "Parameters": "参数",
    "billions (G)": "十亿（G）",
    "counted": "统计值",
    "growth rate k": "增长率 k",
    "millions": "百万",
    "quadratic through k = 12, 16, 24": "过 k = 12、16、24 的二次曲线",
    "Block 3 (k0 = 256, k = 32): parameters grow quadratically with depth": (
        "稠密块 3（k0 = 256，k = 32）：参数随深度二次增长"
    ),
    "counted DenseBlock(L, 256, 32)": "统计值：DenseBlock(L, 256, 32)",
    "layers L in block 3": "稠密块 3 的层数 L",
    "parameters of the block (millions)": "块的参数（百万）",
    "%{y} from the block input<extra></extra>": "%{y} 来自块输入<extra></extra>",
    "L (layers in the block) =": "L（块中的层数）=",
    "a block of %{customdata[0]} layers outputs %{y} channels<br>"
    "and has %{customdata[1]:,} parameters<extra></extra>": (
        "%{customdata[0]} 层的块输出 %{y} 个通道<br>共有 %{customdata[1]:,} 个参数<extra></extra>"
    ),
    "block input (k₀)": "块输入（k₀）",
    "block output (k₀ + kL)": "块输出（k₀ + kL）",
    "dense layer ℓ of the block": "块中的稠密层 ℓ",
    "earlier layers (k each)": "之前各层（每层 k 个）",
    "input channels m = k₀ + k(ℓ − 1)": "输入通道数 m = k₀ + k(ℓ − 1)",
    "k (growth rate) =": "k（增长率）=",
    "k₀ (block input) =": "k₀（块输入）=",
    "layer %{x} reads %{customdata} channels:<br>%{y} from earlier layers<extra></extra>": (
        "第 %{x} 层读入 %{customdata} 个通道：<br>%{y} 来自之前各层<extra></extra>"
    ),
    "out": "输出",
    # Chapter 4: bottlenecks
    "Multiply-adds per output pixel": "每个输出像素的乘加运算",
    "bottleneck: 1x1 (4k), 3x3": "瓶颈层：1x1（4k），3x3",
    "input channels m": "输入通道数 m",
    "bottleneck": "瓶颈层",
    "cheaper ->": "更省 ->",
    "measured, bottleneck": "实测，瓶颈层",
    "measured, plain": "实测，普通层",
    "multiply-adds per output pixel (thousands)": "每个输出像素的乘加运算（千）",
    "parameters per layer (thousands)": "每层参数（千）",
    "plain: 3x3 conv": "普通层：3x3 conv",
    "DenseNet-121's four dense blocks, with and without bottlenecks": (
        "DenseNet-121 的四个稠密块：有无瓶颈层"
    ),
    "Multiply-adds per dense block": "每个稠密块的乘加运算",
    "Parameters per dense block": "每个稠密块的参数",
    "multiply-adds (billions)": "乘加运算（十亿）",
    "parameters (millions)": "参数（百万）",
    "plain 3x3": "普通 3x3",
    "with bottleneck (DenseNet-B)": "带瓶颈层（DenseNet-B）",
    "%{text}<br>%{y:,} parameters<extra>bottleneck: 1x1 (4k), 3x3</extra>": (
        "%{text}<br>%{y:,} 个参数<extra>瓶颈层：1x1（4k），3x3</extra>"
    ),
    "%{text}<br>%{y:,} parameters<extra>plain: 3x3 conv</extra>": (
        "%{text}<br>%{y:,} 个参数<extra>普通层：3x3 conv</extra>"
    ),
    "block, bottleneck: 1x1 (4k), 3x3": "块，瓶颈层：1x1（4k），3x3",
    "block, plain: 3x3 conv": "块，普通层：3x3 conv",
    "layer ℓ of the block": "块中的第 ℓ 层",
    "number of layers L": "层数 L",
    "one dense layer: parameters": "一个稠密层：参数",
    "the whole block of L layers: parameters": "整个 L 层的块：参数",
    # Chapter 5: transitions and compression
    "What transition1's pooling does to the signed output of its 1x1 convolution": (
        "transition1 的池化对其 1x1 卷积带符号输出的作用"
    ),
    "average pool": "平均池化",
    "average pool 2x2": "2x2 平均池化",
    "change of the map's mean (std)": "特征图均值的变化（标准差）",
    "density": "密度",
    "how pooling moves each map's mean": "池化如何移动每个特征图的均值",
    "input": "输入",
    "map (output channel of transition1's 1x1 conv)": (
        "特征图（transition1 的 1x1 conv 的输出通道）"
    ),
    "max pool": "最大池化",
    "max pool 2x2": "2x2 最大池化",
    "max pool: inputs that get a gradient": "最大池化：得到梯度的输入",
    "(16x16 corner, black = yes)": "（16x16 的一角，黑色 = 是）",
    "one signed map transition1 pools": "transition1 池化的一个带符号特征图",
    "value, in standard deviations of its map": "数值（以所在特征图的标准差为单位）",
    "Channel schedule: $+k$ per layer in a block, $\\times\\theta$ at each transition": (
        "通道变化：块内每层 $+k$，每个过渡层 $\\times\\theta$"
    ),
    "Cost of the DenseNet-121 layout as $\\theta$ varies": (
        "$\\theta$ 变化时 DenseNet-121 布局的开销"
    ),
    "compression factor $\\theta$": "压缩因子 $\\theta$",
    "cost relative to $\\theta$ = 1": "相对 $\\theta$ = 1 的开销",
    "dense layer, counted across the whole network (transitions at dotted lines)": (
        "稠密层，按整个网络计数（虚线处为过渡层）"
    ),
    "input channels of the layer": "该层的输入通道数",
    "mult-adds at 224x224": "224x224 下的乘加运算",
    "parameters": "参数",
    "CIFAR models with L = 100, k = 12: bottlenecks and compression": (
        "CIFAR 模型（L = 100，k = 12）：瓶颈层与压缩"
    ),
    "%{y:.0f}%<extra>the chosen θ</extra>": "%{y:.0f}%<extra>所选 θ</extra>",
    "compression θ": "压缩因子 θ",
    "compression θ =": "压缩因子 θ =",
    "cost, % of DenseNet-121": "开销，占 DenseNet-121 的 %",
    "dense layer, counted through the network": "稠密层，按整个网络计数",
    "input channels": "输入通道数",
    "layer %{x} reads %{y} channels<extra></extra>": "第 %{x} 层读入 %{y} 个通道<extra></extra>",
    "layer %{x} reads %{y} channels<extra>DenseNet-121</extra>": (
        "第 %{x} 层读入 %{y} 个通道<extra>DenseNet-121</extra>"
    ),
    "multiply-adds (224x224)": "乘加运算（224x224）",
    "the chosen θ": "所选 θ",
    "θ = %{x}: %{y:.0f}%<extra>multiply-adds</extra>": "θ = %{x}：%{y:.0f}%<extra>乘加运算</extra>",
    "θ = %{x}: %{y:.0f}%<extra>parameters</extra>": "θ = %{x}：%{y:.0f}%<extra>参数</extra>",
    # Chapter 6: DenseNet-121
    "scores": "分数",
    "7×7 conv, stride 2": "7×7 conv，步幅 2",
    "3×3 max pool, stride 2": "3×3 最大池化，步幅 2",
    "2×2 avg pool, stride 2": "2×2 平均池化，步幅 2",
    "global avg pool": "全局平均池化",
    "classifier": "分类器",
    "linear": "线性层",
    "pooling": "池化",
    "stem": "起始层",
    "Channels grow inside blocks and halve at transitions; the grid only shrinks": (
        "通道数在块内增长、在过渡层减半；网格只会缩小"
    ),
    "DenseNet-121 at 224x224: box height = side of the feature map": (
        "224x224 输入下的 DenseNet-121：方框高度 = 特征图边长"
    ),
    "(labels: stage above, channels and grid below)": "（标注：上方为阶段，下方为通道数与网格）",
    "dense block": "稠密块",
    "fc": "全连接层",
    "feature-map side in pixels (line, log scale)": "特征图边长，像素（折线，对数刻度）",
    "output channels (bars)": "输出通道数（柱）",
    "side of the feature map": "特征图边长",
    "transition": "过渡层",
    "Cost of the DenseNet family": "DenseNet 家族的开销",
    "(blue: k = 32, red: k = 48)": "（蓝：k = 32，红：k = 48）",
    "ImageNet error from the paper's Table 3": "论文表 3 中的 ImageNet 误差",
    "mult-adds per 224x224 image (G)": "每张 224x224 图像的乘加运算（G）",
    "top-1 error (%), single crop": "top-1 误差（%），单次裁剪",
    "Compute per stage": "各阶段的计算量",
    "DenseNet-121: parameters sit late, compute happens early": (
        "DenseNet-121：参数集中在后段，计算集中在前段"
    ),
    "Parameters per stage": "各阶段的参数",
    # Chapter 7: torchvision's weights
    "The state_dict's shapes trace the dense blocks": "state_dict 的形状勾勒出各稠密块",
    "channels into the layer": "进入该层的通道数",
    "(length of norm1.weight)": "（norm1.weight 的长度）",
    "dense layer (counted through the whole network)": "稠密层（按整个网络计数）",
    "network input, 224 x 224": "网络输入，224 x 224",
    "(normalisation undone to display)": "（为显示而撤销了归一化）",
    "skimage.data.chelsea() through torchvision's evaluation preprocessing": (
        "skimage.data.chelsea() 经过 torchvision 的评估预处理"
    ),
    "x (pixels)": "x（像素）",
    "y (pixels)": "y（像素）",
    # Chapter 8: GPU (and CPU) speed
    "DenseNet-BC (L=100, k=12), inference on a batch of 4, this page's CPU": (
        "DenseNet-BC（L=100，k=12），批量为 4 的推理，构建本页的 CPU"
    ),
    "milliseconds (median of 3)": "毫秒（3 次的中位数）",
    # Chapter 9: training
    "C10+ test error (%)": "C10+ 测试误差（%）",
    "Table 2: CIFAR-10 error against model size": "表 2：CIFAR-10 误差与模型大小",
    "parameters (millions, log scale)": "参数（百万，对数刻度）",
    "Test digits (top) and augmented training digits (bottom), 12x12": (
        "测试数字（上）与增强后的训练数字（下），12x12"
    ),
    "Accuracy": "准确率",
    "Loss": "损失",
    "accuracy (%)": "准确率（%）",
    "cross-entropy loss": "交叉熵损失",
    "epoch": "轮",
    "test": "测试",
    "train": "训练",
    "DenseNet-BC (L=16, k=8) on digits": "DenseNet-BC（L=16，k=8）识别手写数字",
    "Confusion matrix (test set)": "混淆矩阵（测试集）",
    "images": "图像数",
    "predicted digit": "预测的数字",
    "true digit": "真实数字",
    "Misclassified test digits: true → predicted": "分错的测试数字：真实 → 预测",
    "DenseNet-BC test": "DenseNet-BC 测试",
    "DenseNet-BC train": "DenseNet-BC 训练",
    "plain CNN test": "普通 CNN 测试",
    "plain CNN train": "普通 CNN 训练",
    "Same recipe, same data, about the same number of parameters": (
        "同样的训练方案、同样的数据、参数量相当"
    ),
    # Chapter 10: feature reuse
    "The shipped run, from its checkpoint": "随书附带的训练结果（读自其检查点）",
    "mean |weight| / column max": "平均 |权重| / 列最大值",
    "mean |weight| / block max": "平均 |权重| / 块最大值",
    "source layer s": "来源层 s",
    "target layer ℓ": "目标层 ℓ",
    "untrained (He initialisation, seed 0)": "未训练（He 初始化，种子 0）",
    "colour": "颜色",
    "source s = %{y}<br>target = %{x}<br>mean |weight| = %{customdata:.4f}<br>"
    "colour = %{z:.2f}<extra></extra>": (
        "来源 s = %{y}<br>目标 = %{x}<br>平均 |权重| = %{customdata:.4f}<br>"
        "颜色 = %{z:.2f}<extra></extra>"
    ),
    # Chapter 11: memory and speed
    "Each layer copies all earlier maps": "每层都复制了之前所有的特征图",
    "One block: k0=24, k=12, 32x32, batch 64": "一个块：k0=24，k=12，32x32，批量 64",
    "all concatenations (quadratic)": "所有拼接（二次）",
    "concatenated input (MB)": "拼接后的输入（MB）",
    "counted with channel_schedule": "用 channel_schedule 统计",
    "dense layer (DenseNet-121, in order)": "稠密层（DenseNet-121，按顺序）",
    "layers in the block, L": "块中的层数 L",
    "the block's features (linear)": "块的特征（线性）",
    "DenseNet-BC (L=100, k=12), batch of 2 CIFAR images, training step": (
        "DenseNet-BC（L=100，k=12），2 张 CIFAR 图像的批量，一个训练步"
    ),
    "MB saved for backward so far": "到此为止为反向传播保存的 MB",
    "dense layer (3 blocks of 16)": "稠密层（3 个块，每块 16 层）",
    "DenseNet-BC-40, batch 8 (median of 3)": "DenseNet-BC-40，批量 8（3 次的中位数）",
    "Tensors kept for backward (batch 2, 32x32)": "为反向传播保留的张量（批量 2，32x32）",
    "depth L of DenseNet-BC (k=12)": "DenseNet-BC 的深度 L（k=12）",
    "ms per training step": "每个训练步的耗时（ms）",
    "plain": "普通",
    "saved for backward (MB)": "为反向传播保存（MB）",
    "DenseNet-121 inference, batch 1, 224x224": "DenseNet-121 推理，批量 1，224x224",
    "fast": "快速路径",
    "ms per image (median of 3)": "每张图像的耗时（ms，3 次的中位数）",
    "DenseNet-121 inference (recorded)": "DenseNet-121 推理（记录值）",
    "densenet_edu fast": "densenet_edu 快速路径",
    "speed-up over torchvision eager": "相对 torchvision eager 的加速比",
}

_REUSE_STATE = {"trained": "训练后", "untrained": "未训练"}
_REUSE_COLOUR = {
    "each block / its largest entry": "每块除以块内最大值",
    "each column / its largest entry": "每列除以列内最大值",
    "raw mean |weight|": "原始平均 |权重|",
}


def _reuse_title(match: re.Match[str]) -> str:
    state, colour = _REUSE_STATE[match["state"]], _REUSE_COLOUR[match["colour"]]
    return f"特征重用，{state}的模型：颜色 = {colour}"


def _reuse_option(match: re.Match[str]) -> str:
    return f"{_REUSE_STATE[match['state']]}，{_REUSE_COLOUR[match['colour']]}"


_STATE = r"(?P<state>trained|untrained)"
_COLOUR = "(?P<colour>" + "|".join(re.escape(c) for c in _REUSE_COLOUR) + ")"
_N = r"(\d[\d,.]*)"

#: (pattern, replacement, an example it must translate): text with numbers filled in by code.
ZH_PATTERNS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str], str]] = [
    (re.compile(p), r, e)
    for p, r, e in [
        # Chapter 2
        (
            rf"Dense block: {_N} layers, k₀ = {_N}, k = {_N}, "
            rf"{_N} connections \(●\) into the layers",
            r"稠密块：\1 层，k₀ = \2，k = \3，共 \4 条连接（●）进入各层",
            "Dense block: 5 layers, k₀ = 6, k = 4, 15 connections (●) into the layers",
        ),
        (r"(H\S+): (\d+) ch in", r"\1：输入 \2 通道", "H₁: 6 ch in"),
        (r"block input (x\S+): (\d+) ch", r"块输入 \1：\2 通道", "block input x₀: 6 ch"),
        (r"(x\S+): (\d+) ch", r"\1：\2 通道", "x₁: 4 ch"),
        (r"(\d+) ch out", r"输出 \1 通道", "26 ch out"),
        (
            rf"Dense block: {_N} connections, concatenated",
            r"稠密块：\1 条连接，拼接",
            "Dense block: 21 connections, concatenated",
        ),
        (
            rf"L = {_N} layers: a chain, a ResNet and a dense block "
            r"\(Eq\. 2 of Huang et al\., 2017\)",
            r"L = \1 层：普通链式网络、ResNet 与稠密块（Huang et al., 2017 的式 2）",
            "L = 6 layers: a chain, a ResNet and a dense block (Eq. 2 of Huang et al., 2017)",
        ),
        (
            rf"Plain chain: {_N} connections",
            r"普通链式网络：\1 条连接",
            "Plain chain: 6 connections",
        ),
        (
            rf"ResNet: {_N} connections \+ {_N} identity shortcuts \(dashed\), added",
            r"ResNet：\1 条连接 + \2 条恒等捷径（虚线），相加",
            "ResNet: 6 connections + 6 identity shortcuts (dashed), added",
        ),
        (rf"residual unit: fixed at {_N}", r"残差单元：固定为 \1", "residual unit: fixed at 4"),
        # Chapter 3
        (
            rf"DenseNet-121 \(k = {_N}\): \+k per layer, x0\.5 at each transition",
            r"DenseNet-121（k = \1）：每层 +k，每个过渡层 x0.5",
            "DenseNet-121 (k = 32): +k per layer, x0.5 at each transition",
        ),
        (rf"block {_N}", r"稠密块 \1", "block 1"),
        (rf"dense block {_N}", r"稠密块 \1", "dense block 1"),
        (rf"{_N} layers", r"\1 层", "6 layers"),
        (rf"in {_N}", r"输入 \1", "in 128"),
        (rf"out {_N}", r"输出 \1", "out 1024"),
        (r"formula (\$.*\$)", r"公式 \1", "formula $36k^2$"),
        (r"leading term (\$.*\$)", r"主项 \1", "leading term $2k^2L^2$"),
        (
            rf"k₀ = {_N}, k = {_N}, L = {_N}: the block outputs {_N} channels",
            r"k₀ = \1，k = \2，L = \3：块输出 \4 个通道",
            "k₀ = 64, k = 32, L = 6: the block outputs 256 channels",
        ),
        (
            rf"(DenseBlock\(.*\)) has {_N} parameters",
            r"\1 有 \2 个参数",
            "DenseBlock(6, 64, 32) has 335,040 parameters",
        ),
        (
            rf"layer {_N} reads {_N} channels",
            r"第 \1 层读入 \2 个通道",
            "layer 1 reads 128 channels",
        ),
        # Chapter 4
        (
            rf"One dense layer of DenseNet-121 \(k = {_N}\): plain vs bottleneck",
            r"DenseNet-121 的一个稠密层（k = \1）：普通层与瓶颈层",
            "One dense layer of DenseNet-121 (k = 32): plain vs bottleneck",
        ),
        (
            rf"a block of {_N} layers: bottleneck / plain = {_N}",
            r"\1 层的块：瓶颈层 / 普通层 = \2",
            "a block of 1 layers: bottleneck / plain = 0.55",
        ),
        (
            rf"k = {_N}, k₀ = {_N}: the bottleneck layer is smaller from layer {_N} on"
            rf"(?: \(it reads {_N} channels\))?;",
            lambda m: (
                f"k = {m[1]}，k₀ = {m[2]}：从第 {m[3]} 层起瓶颈层更小"
                + (f"（该层读入 {m[4]} 个通道）；" if m[4] else "；")
            ),
            "k = 32, k₀ = 64: the bottleneck layer is smaller from layer 7 on "
            "(it reads 256 channels);",
        ),
        (
            rf"a {_N}-layer block: {_N} M with, {_N} M without bottlenecks",
            r"\1 层的块：有瓶颈层 \2 M，无瓶颈层 \3 M",
            "a 32-layer block: 3.52 M with, 5.20 M without bottlenecks",
        ),
        # Chapter 5
        (
            rf"all {_N} maps, before and after pooling",
            r"全部 \1 个特征图，池化前后",
            "all 128 maps, before and after pooling",
        ),
        (rf"\(channel {_N}, (\d+x\d+)\)", r"（通道 \1，\2）", "(channel 73, 56x56)"),
        (
            rf"θ = {_N}: the transitions keep (.+) maps, the classifier reads {_N}",
            r"θ = \1：过渡层保留 \2 个特征图，分类器读入 \3 个",
            "θ = 0.50: the transitions keep 128, 256, 512 maps, the classifier reads 1,024",
        ),
        (
            rf"{_N} M parameters, {_N} G multiply-adds \(DenseNet-121: {_N} M, {_N} G\)",
            r"\1 M 参数，\2 G 乘加运算（DenseNet-121：\3 M，\4 G）",
            "7.98 M parameters, 2.83 G multiply-adds (DenseNet-121: 7.98 M, 2.83 G)",
        ),
        # Chapter 6
        (r"(.*\d) ch", r"\1 通道", "128 → 512 ch"),
        (rf"transition {_N}", r"过渡层 \1", "transition 1"),
        (rf"trans\. {_N}", r"过渡层 \1", "trans. 1"),
        # Chapter 7
        (
            r"photo (\d+ x \d+), resized to (\d+ x \d+)",
            r"照片 \1，缩放到 \2",
            "photo 451 x 300, resized to 384 x 256",
        ),
        (
            r"\(yellow: the (\d+ x \d+) crop\)",
            r"（黄色：\1 的裁剪区域）",
            "(yellow: the 224 x 224 crop)",
        ),
        # Chapter 10
        (rf"trained \({_N} epochs\)", r"训练后（\1 轮）", "trained (30 epochs)"),
        (
            rf"Feature reuse, {_STATE} model: colour = {_COLOUR}",
            _reuse_title,
            "Feature reuse, trained model: colour = raw mean |weight|",
        ),
        (rf"{_STATE}, {_COLOUR}", _reuse_option, "untrained, each column / its largest entry"),
        # Chapter 11
        (rf"\(batch {_N}, (.*)\)", r"（批量 \1，\2）", "(batch 1, 224x224, float32)"),
        (rf"batch {_N}", r"批量 \1", "batch 16"),
    ]
]
