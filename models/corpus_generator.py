"""Composes labelled training examples from phrase parts: ``models/corpus/generated.jsonl``.

Hand-written examples (``handwritten.jsonl``) cover the situations one by one; this generator adds
volume and variety of framing: the same situation told as a 12345 work order, a terse 110 summary
or a grid worker's report, with places, amounts and escalation markers that appear in every domain
(so that 聚集 or 扬言 never become evidence for one domain). It is seeded and deterministic.
The independent evaluation set is never produced here.

Run: ``PYTHONPATH=. python -m models.corpus_generator [--per-domain 220] [--none 700]``.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

from models.domain_classifier import DEFAULT_CORPUS, write_jsonl

PLACES = ["", "", "城关镇", "东城街道", "某小区", "幸福路", "河西村", "工业园区", "县城", "新华社区", "锦绣花园小区",
          "老街", "三组", "南山村", "滨江路", "开发区", "镇上", "城南", "汽车站附近", "农贸市场"]
AMOUNTS = ["三千元", "五千多元", "1万元", "两万元", "3.5万元", "八万元", "十几万", "六千", "二十万元"]
ESCALATIONS = ["", "", "", "", "", "，现场有二十余人聚集", "，当事人扬言要跳楼", "，称要找媒体曝光",
               "，情绪激动", "，多人围堵在门口", "，称不解决就去市里上访", "，已拉横幅", "，双方情绪激动需尽快处置"]

# domain -> situation phrases; {a} is an amount
SITUATIONS = {
    "public_order": ["家中被盗，丢失{a}现金", "电动车被偷", "被人打伤", "有人聚众赌博", "有人打架斗殴", "手机被扒",
                     "有人持刀威胁", "店铺被撬盗", "车辆被砸", "有人贩卖毒品", "醉汉闹事打人", "有人收保护费",
                     "被人抢走挎包", "有人吸毒", "酒后斗殴致一人受伤", "地下赌场深夜营业", "有人在路口寻衅滋事",
                     "电缆被盗", "被陌生人殴打", "有人入室盗窃"],
    "civil_dispute": ["与邻居因漏水发生纠纷", "夫妻吵架", "邻居噪音扰民协商无果", "兄弟因赡养老人闹矛盾",
                      "两户因宅基地地界争执", "借款{a}不还产生纠纷", "因停车位与邻居争吵", "婆媳矛盾激化",
                      "因分遗产发生争执", "因狗咬伤赔偿协商不成", "邻里因通道占用发生口角", "与房东因押金发生争执",
                      "离婚后争夺孩子抚养权", "因田间灌溉用水起争执", "因装修款{a}与装修队纠纷", "邻居乱堆杂物引发矛盾",
                      "因树木遮挡采光两家争吵", "亲戚间债务纠纷"],
    "petition_stability": ["对政府处理结果不满多次上访", "反映问题长期得不到解决，部门互相推诿", "重点信访人员进京上访苗头",
                           "多人到县政府门口聚集，诉求不明", "对信访答复不服要求复查", "认为镇政府不作为",
                           "越级上访到省信访局", "对法院判决不服长期上访", "干部处理问题不公", "重复信访人员情绪不稳",
                           "一群人在信访局门口静坐", "反映的问题被敷衍了事，要求追责"],
    "land_demolition": ["征地补偿款{a}未到位", "拆迁补偿标准太低", "强拆房屋未谈补偿", "安置房迟迟不交付",
                        "青苗补偿款被截留", "过渡安置费停发", "回迁房分配不公", "土地被征收后社保未落实",
                        "拆迁公司断水断电逼签协议", "村民阻止征地施工", "征地款分配不均", "棚改评估价过低",
                        "拆迁户与拆迁办发生冲突", "失地农民安置不到位"],
    "housing_construction": ["开发商逾期交房", "楼盘停工成烂尾楼", "新房漏水开裂开发商不修", "房产证迟迟办不下来",
                             "物业不作为电梯常坏", "物业乱涨物业费", "维修基金被挪用", "交房面积缩水",
                             "业主与物业因停车费纠纷", "开发商挪用预售资金", "精装修变毛坯", "物业撤场小区无人管理",
                             "业主要求开发商支付延期交房违约金", "地下室渗水开发商推诿"],
    "labor_wage": ["包工头拖欠工资{a}", "工厂拖欠工人工资两个月", "农民工讨薪未果", "公司裁员不给经济补偿",
                   "老板欠劳务费跑路", "单位不缴社保", "被无故辞退", "加班不给加班费", "工地拖欠工钱",
                   "餐馆拖欠服务员工资", "工伤后单位不管", "欠发年终奖", "项目部拖欠人工费{a}", "停产后只发生活费"],
    "financial_fraud": ["被刷单返利诈骗{a}", "接到冒充公检法电话被骗{a}", "理财平台爆雷本金无法取回", "网贷被骗交保证金",
                        "养老投资项目高息揽储", "网恋投资虚拟货币被骗", "冒充客服注销校园贷被骗", "非法集资无法兑付",
                        "冒充领导微信借钱被骗", "P2P平台逾期失联", "中奖诈骗交手续费", "游戏账号交易被骗",
                        "保健品讲座诱导老人投资", "合作社非法吸收存款"],
    "public_safety": ["居民楼着火", "燃气泄漏", "两车相撞有人受伤", "电动车楼道充电起火", "危化品违规存放",
                      "山体塌方", "有人落水", "暴雨内涝车辆被淹", "工地脚手架坍塌", "有人触电", "货车侧翻",
                      "消防通道被堵", "液化气罐违规使用", "自建房墙体开裂", "井盖缺失", "烟花爆竹非法储存", "厂房起火"],
    "campus_safety": ["学生在学校被欺凌", "校门口有人拦截学生要钱", "学校食堂饭菜有虫", "幼儿园老师体罚孩子",
                      "校车超载", "校外培训机构无证办学", "学校围墙倒塌", "学生打架受伤", "校门口流动摊贩卖三无食品",
                      "学校周边网吧接纳未成年人", "学生被同学拍视频侮辱", "陌生人尾随放学女生", "学生宿舍消防通道锁闭",
                      "托管班孩子受伤无人管"],
    "environment_health": ["工厂偷排污水", "养殖场臭味扰民", "垃圾堆积无人清运", "烟囱冒黑烟", "饭店吃饭后食物中毒",
                           "超市卖过期食品", "搅拌站粉尘污染", "河里死鱼疑似污染", "无证诊所行医", "药店卖假药",
                           "工地夜间施工噪声扰民", "露天焚烧垃圾", "多人发热腹泻", "非法倾倒工业废渣",
                           "自来水有异味", "油烟污染严重", "医疗废物乱丢"],
}
NONE_REQUESTS = ["咨询社保缴费", "咨询医保报销", "路灯不亮", "咨询身份证补办", "咨询公交线路", "建议增设公交站",
                 "查询电费", "停水多久恢复", "表扬社区工作人员", "咨询养老金认证", "咨询新生儿落户", "咨询公积金提取",
                 "咨询居住证办理", "建议增加健身器材", "咨询驾驶证换证", "咨询小学报名材料", "感谢抢修人员",
                 "咨询残疾证办理", "咨询高龄补贴", "咨询异地就医备案", "建议延长办公时间", "咨询营业执照",
                 "咨询农业补贴发放", "查询工单进度", "楼道灯不亮", "咨询不动产登记地址", "咨询燃气开户",
                 "咨询低保申请", "咨询护照办理", "水压低", "咨询失业金", "网络故障", "咨询垃圾分类", "道路坑洼建议修补",
                 "咨询结婚登记", "咨询学生医保", "暖气不热", "咨询停车收费标准", "咨询征兵报名", "快递不送上门",
                 "咨询拆迁政策", "咨询房产证办理流程", "咨询劳动合同规定", "咨询疫苗接种点", "咨询二手房税费",
                 "咨询学校开学时间", "咨询教师资格证报名", "表扬民警", "咨询水费价格", "建议多建公厕"]

HOTLINE = {
    "openers": ["市民来电反映：", "来电人反映，", "诉求人称", "", "", "本人", "市民反映", "来电称", "群众来电：", "反映人称"],
    "closings": ["，希望相关部门尽快处理。", "，请求核实处理。", "，要求给个说法。", "。", "，请协调解决。", "，请尽快解决！",
                 "，已多次反映。", "，盼回复。", ""],
    "categories": {"none": ["咨询", "咨询", "求助", "建议", "表扬", "其他", "投诉"], "*": ["投诉", "投诉", "求助", "举报", "其他"]},
}
POLICE = {
    "openers": ["报警称", "称", "报警人称", "事主称", "群众报警称", "报警人报称"],
    "closings": ["。", "，请求出警。", "，要求处理。", "", "，民警已到场。", "，已移交派出所。"],
    "categories": {
        "none": ["求助", "其他"], "public_order": ["治安", "刑事"], "civil_dispute": ["纠纷"],
        "petition_stability": ["群体性事件", "其他"], "public_safety": ["火灾", "交通", "灾害事故"],
        "financial_fraud": ["刑事", "举报"], "*": ["纠纷", "求助", "其他", "治安"],
    },
}
GRID = {
    "openers": ["网格员巡查发现", "网格员上报：", "入户走访了解到", "调解记录：", "村民反映", "经排查，"],
    "closings": ["，已上报镇综治中心。", "，已现场劝解。", "，经调解双方达成一致。", "，调解未成功，已上报。",
                 "，已联系相关部门处置。", "，持续跟踪。"],
    "categories": {
        "none": ["民生服务", "城市管理", "其他", "特殊人群"], "public_order": ["治安隐患"],
        "civil_dispute": ["矛盾纠纷"], "petition_stability": ["信访问题"], "public_safety": ["安全隐患"],
        "environment_health": ["环境卫生"], "*": ["矛盾纠纷", "其他", "信访问题", "安全隐患"],
    },
}
STYLES = {"hotline_12345": HOTLINE, "police_110": POLICE, "grid": GRID}


def compose(rng: random.Random, domain: str) -> dict:
    source = rng.choice(["hotline_12345", "hotline_12345", "police_110", "grid"])
    style = STYLES[source]
    if domain == "none":
        situation, escalation = rng.choice(NONE_REQUESTS), ""
    else:
        situation = rng.choice(SITUATIONS[domain]).format(a=rng.choice(AMOUNTS))
        escalation = rng.choice(ESCALATIONS)
    place = rng.choice(PLACES)
    text = f"{rng.choice(style['openers'])}{place}{situation}{escalation}{rng.choice(style['closings'])}"
    categories = style["categories"].get(domain) or style["categories"]["*"]
    return {"text": text, "source": source, "source_category": rng.choice(categories), "domain": domain}


def generate(per_domain: int, n_none: int, seed: int = 20260101) -> list[dict]:
    rng = random.Random(seed)
    rows, seen = [], set()
    for domain, count in [(d, per_domain) for d in SITUATIONS] + [("none", n_none)]:
        made = 0
        for _ in range(count * 20):
            row = compose(rng, domain)
            if row["text"] not in seen:
                seen.add(row["text"])
                rows.append(row)
                made += 1
            if made == count:
                break
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-domain", type=int, default=220)
    parser.add_argument("--none", type=int, default=700)
    parser.add_argument("--out", type=Path, default=DEFAULT_CORPUS / "generated.jsonl")
    args = parser.parse_args(argv)
    rows = generate(args.per_domain, args.none)
    write_jsonl(args.out, rows)


if __name__ == "__main__":
    main()
