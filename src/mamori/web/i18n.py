"""The console in English and Japanese (jinja2's ``i18n`` extension over a small catalogue).

Templates mark their text with ``_("...")`` or ``{% trans %}``; Python code
with :func:`N_` (marked, translated where it is shown). English is the text
itself; :data:`JA` maps it to Japanese. tests/web/test_console_i18n.py checks
that every marked string of every console template has its Japanese.

The language: the ``mamori_lang`` cookie (the switch in the header sets it),
else the browser's ``Accept-Language`` as the block page reads it.
"""

from __future__ import annotations

from starlette.requests import Request

from mamori.web.blockpage import language

LANGUAGES = (("en", "English"), ("ja", "日本語"))
COOKIE = "mamori_lang"


def N_(message: str) -> str:  # noqa: N802 (the gettext convention)
    """Mark *message* for translation where it is defined; translate it where shown."""
    return message


def choose(request: Request) -> str:
    """``en`` or ``ja``: the cookie set by the switch, else Accept-Language."""
    cookie = request.cookies.get(COOKIE, "")
    if cookie in dict(LANGUAGES):
        return cookie
    return language(request.headers.get("accept-language"))


class Catalogue:
    """gettext/ngettext of one language (English: the message itself)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.table = JA if lang == "ja" else {}

    def gettext(self, message: str) -> str:
        return self.table.get(message, message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.gettext(singular if n == 1 else plural)


# fmt: off
JA: dict[str, str] = {
    # navigation, titles (console.py)
    "Overview": "概要",
    "Query log": "クエリログ",
    "Policy": "ポリシー",
    "Feeds": "フィード",
    "Rules": "ルール",
    "Passive DNS": "パッシブDNS",
    "Alerts": "アラート",
    "Reports": "誤検知の報告",
    "False-positive reports": "誤検知の報告",
    "Log in": "ログイン",
    "Log out": "ログアウト",
    "User": "ユーザー",
    "Password": "パスワード",
    "The form expired; try again.": "フォームの有効期限が切れました。もう一度お試しください。",
    "Wrong user or password.": "ユーザー名またはパスワードが違います。",
    "Too many failed logins; try again in %(seconds)s seconds.":
        "ログインの失敗が多すぎます。%(seconds)s 秒後にもう一度お試しください。",
    "zone: %(name)s": "ゾーン: %(name)s",
    "file": "ファイル",
    "transfer from %(primaries)s": "%(primaries)s からゾーン転送",
    "feed %(name)s": "フィード %(name)s",
    "by query type": "クエリタイプによる",
    # overview
    "Queries (24 h, logged)": "クエリ数(24時間、ログ記録分)",
    "Blocked (24 h)": "ブロック数(24時間)",
    "Cache hit rate": "キャッシュヒット率",
    "Upstreams up": "稼働中のアップストリーム",
    "Queries and blocks per hour": "1時間ごとのクエリ数とブロック数",
    "Blocks by category": "カテゴリー別のブロック数",
    "Blocks per hour by category": "カテゴリー別・1時間ごとのブロック数",
    "Likely infected (contacted botnet C&C or malware names, 24 h)":
        "感染の疑いがあるクライアント(ボットネットのC&Cまたはマルウェアの名前を"
        "問い合わせたもの、24時間)",
    "Client": "クライアント",
    "Device": "デバイス",
    "Node": "ノード",
    "all nodes": "すべてのノード",
    "Policy hits in the query log": "クエリログ上のポリシーヒット",
    "Hits": "ヒット数",
    "Last": "最終",
    "Names": "名前",
    "None.": "なし。",
    "Top blocked names": "ブロックされた名前(上位)",
    "Top clients by hits": "ヒット数の多いクライアント",
    "Top queried names": "問い合わせの多い名前",
    "Name": "名前",
    "Zone": "ゾーン",
    "Queries": "クエリ数",
    "queries": "クエリ",
    "blocked": "ブロック",
    "allowed": "許可",
    "any": "すべて",
    # query log
    "Name contains": "名前(部分一致)",
    "Action": "アクション",
    "Since": "開始日時",
    "2026-11-28 or 24h": "2026-11-28 または 24h",
    "Search": "検索",
    "Live: new queries appear as they are logged":
        "ライブ表示中: 新しいクエリは記録されると表示されます",
    "Paused": "一時停止中",
    "Live updates failed; retrying": "ライブ更新に失敗しました。再試行しています",
    "Pause": "一時停止",
    "Resume": "再開",
    "Time (UTC)": "時刻(UTC)",
    "Type": "タイプ",
    "Answer": "応答",
    "Rule": "ルール",
    "No matching queries.": "該当するクエリはありません。",
    "Older": "さらに古いクエリ",
    "(cache)": "(キャッシュ)",
    "%(action)s by %(zone)s": "%(zone)s により %(action)s",
    "would block (preview) by %(zone)s": "%(zone)s がブロックする予定 (プレビュー)",
    "would block (preview)": "ブロックする予定 (プレビュー)",
    # Block / Allow
    "Add a rule": "ルールを追加",
    "Block": "ブロック",
    "Allow": "許可",
    "Block this name": "この名前をブロック",
    "Allow this name": "この名前を許可",
    "Also every subdomain": "サブドメインも含める",
    "Comment": "コメント",
    "Save rule": "ルールを保存",
    "Cancel": "キャンセル",
    "Rule saved: %(action)s %(name)s": "ルールを保存しました: %(name)s を%(action)s",
    "The rule was not saved": "ルールは保存されませんでした",
    "No answer from the server": "サーバーから応答がありません",
    # passive DNS
    "Name, address, network, AS number or keyword":
        "名前、アドレス、ネットワーク、AS番号またはキーワード",
    "Kind": "種類",
    "auto": "自動",
    "keyword": "キーワード",
    "Seen on or after": "観測日(この日以降)",
    "Seen on or before": "観測日(この日以前)",
    "2026-11-01 or 1w": "2026-11-01 または 1w",
    "First/last seen": "初回/最終観測",
    "first seen .. last seen": "初回観測 〜 最終観測",
    "Data": "データ",
    "First seen": "初回観測",
    "Last seen": "最終観測",
    "Count": "回数",
    "Nothing observed.": "観測されていません。",
    # policy
    "Would this name be blocked?": "この名前はブロックされますか?",
    "Explain": "判定",
    "by rule <code>%(rule)s</code> in zone <code>%(zone)s</code>":
        "(ゾーン <code>%(zone)s</code> のルール <code>%(rule)s</code>)",
    "%(name)s: not blocked by any zone": "%(name)s: どのゾーンでもブロックされません",
    "(for client %(client)s, groups: %(groups)s)":
        "(クライアント %(client)s、グループ: %(groups)s)",
    "Policy zones (in order)": "ポリシーゾーン(適用順)",
    "Serial": "シリアル",
    "Source": "取得元",
    "Applied": "適用",
    "Last hit": "最終ヒット",
    "yes": "はい",
    "published only": "配信のみ",
    # the Rules page (rules.html)
    "A rule is in force on every worker when this page comes back. Rules come first in the"
    " policy order: an allow rule beats every feed.":
        "ルールはこのページが再表示された時点で全ワーカーに適用されています。ルールはポリシーの"
        "最初に評価されるため、許可ルールはどのフィードよりも優先されます。",
    "Subdomains": "サブドメイン",
    "Groups (none: everyone)": "グループ(指定なし: 全員)",
    "Groups": "グループ",
    "group": "グループ",
    "Client groups": "クライアントグループ",
    "Audit": "監査ログ",
    "Add": "追加",
    "Rules (%(total)s)": "ルール(%(total)s 件)",
    "Added": "追加日時",
    "By": "追加者",
    "block": "ブロック",
    "allow": "許可",
    "no": "いいえ",
    "everyone": "全員",
    "Remove": "削除",
    "No rules matching %(q)s.": "%(q)s に一致するルールはありません。",
    "No rules.": "ルールはありません。",
    "Next page": "次のページ",
    "Changes to %(name)s": "%(name)s の変更履歴",
    "When": "日時",
    "Who": "実行者",
    "From": "接続元",
    "What": "操作",
    "Detail": "詳細",
    "No changes recorded.": "変更の記録はありません。",
    "The rule was not saved: %(error)s": "ルールは保存されませんでした: %(error)s",
    "The rule was not removed: %(error)s": "ルールは削除されませんでした: %(error)s",
    # the Feeds page (feeds.html, settings_pages.py)
    "Feed": "フィード",
    "Defined in": "定義元",
    "Category": "カテゴリー",
    "Format": "形式",
    "Entries": "エントリー数",
    "Last good update": "最終正常更新",
    "Last update": "最終更新",
    "Rejected lines": "取り込めなかった行",
    "(disabled)": "(無効)",
    "(updating…)": "(更新中…)",
    "never": "なし",
    "ok": "成功",
    "refused": "拒否",
    "never updated": "未更新",
    "refresh: %(error)s": "更新エラー: %(error)s",
    "uploaded file": "アップロードしたファイル",
    "Disable": "無効化",
    "Enable": "有効化",
    "Refresh now": "今すぐ更新",
    # feed impact preview (preview_api.py, preview.html)
    "Preview": "プレビュー",
    "Feed preview": "フィードのプレビュー",
    "No preview of %(name)s: %(error)s": "%(name)s のプレビューはできません: %(error)s",
    "Days of the query log": "クエリログの日数",
    "Back to the feeds": "フィード一覧に戻る",
    "%(name)s (zone %(zone)s)": "%(name)s (ゾーン %(zone)s)",
    "Last %(days)s days: %(queries)s queries from %(clients)s clients.":
        "直近 %(days)s 日: %(clients)s 台のクライアントから %(queries)s 件のクエリ。",
    "Would block: queries": "ブロックされるクエリ数",
    "Would block: names": "ブロックされる名前の数",
    "Would block: clients": "影響を受けるクライアント数",
    "Already blocked by an earlier zone (not counted)":
        "先に評価されるゾーンでブロック済み (数に含めない)",
    "Allowed by an earlier zone (not counted)": "先に評価されるゾーンで許可 (数に含めない)",
    "Evaluated after the zones in force before it: %(zones)s.":
        "適用中の次のゾーンの後に評価されます: %(zones)s。",
    "Evaluated first: no zone in force before it.":
        "最初に評価されます (先に適用されるゾーンなし)。",
    "Possible false positives": "誤検知の可能性",
    "Top names": "上位の名前",
    "Top clients": "上位のクライアント",
    "Why": "理由",
    "Not replayed: %(what)s": "再現していない条件: %(what)s",
    "Rejected lines, last update that parsed the feed (%(n)s)":
        "取り込めなかった行(フィードを解析した最後の更新、%(n)s 行)",
    "Rejected lines, last update that parsed the feed (%(n)s shown)":
        "取り込めなかった行(フィードを解析した最後の更新、%(n)s 行を表示)",
    "Line": "行",
    "Text": "内容",
    "Reason": "理由",
    "No [[feed]] configured.": "[[feed]] が設定されていません。",
    "Add a feed": "フィードを追加",
    "or a file": "またはファイル",
    "Refresh (s)": "更新間隔(秒)",
    "Feeds added or switched on/off here are kept in <code>%(overlay)s</code>; your TOML file"
    " is not changed.":
        "ここで追加したフィードや有効/無効の切り替えは <code>%(overlay)s</code> に保存されます。"
        "お使いの TOML ファイルは変更されません。",
    "The feed was not added: %(error)s": "フィードは追加されませんでした: %(error)s",
    "Feed %(name)s was not changed: %(error)s":
        "フィード %(name)s は変更されませんでした: %(error)s",
    # the Groups page (groups.html, settings_pages.py)
    "Group": "グループ",
    "Clients": "クライアント",
    "Client IDs": "クライアントID",
    "Query log days": "クエリログ保存日数",
    "Applying to it": "適用されるゾーン・フィード",
    "[store]": "[store] の設定",
    "only the zones and feeds without groups": "グループ指定のないゾーンとフィードのみ",
    "Save": "保存",
    "No [[group]] configured: every zone and feed applies to every client.":
        "[[group]] が設定されていません。すべてのゾーンとフィードがすべてのクライアントに"
        "適用されます。",
    "Add a group": "グループを追加",
    "Clients (CIDR, space or comma separated)": "クライアント(CIDR、スペースまたはカンマ区切り)",
    "Client IDs (devices)": "クライアントID(デバイス)",
    "Groups added or changed here are kept in <code>%(overlay)s</code>; your TOML file is not"
    ' changed. Say which zones and feeds apply to a group with <code>groups = ["name"]</code>'
    " on the <code>[[rpz]]</code>, <code>[[feed]]</code> or <code>[[dataset]]</code>.":
        "ここで追加・変更したグループは <code>%(overlay)s</code> に保存されます。お使いの TOML"
        " ファイルは変更されません。グループに適用するゾーンとフィードは、<code>[[rpz]]</code>、"
        "<code>[[feed]]</code> または <code>[[dataset]]</code> に"
        ' <code>groups = ["name"]</code> と書いて指定します。',
    "The group was not added: %(error)s": "グループは追加されませんでした: %(error)s",
    "Group %(name)s was not changed: %(error)s":
        "グループ %(name)s は変更されませんでした: %(error)s",
    # the Brands page (brands.html, brand_page.py)
    "Brands": "ブランド監視",
    "Brand": "ブランド",
    "Domains": "ドメイン",
    "Keywords": "キーワード",
    "Watch a brand": "ブランドを監視する",
    "Domains (space or comma separated)": "ドメイン(空白またはカンマ区切り)",
    "Keywords (optional)": "キーワード(省略可)",
    "Brands added here are kept in <code>%(overlay)s</code>; your TOML file is not changed.":
        "ここで追加したブランドは <code>%(overlay)s</code> に保存されます。お使いの TOML"
        " ファイルは変更されません。",
    "No brand watched yet: add one below or as [[brand]] in the configuration.":
        "監視しているブランドはまだありません。下のフォームか、設定ファイルの [[brand]]"
        " で追加してください。",
    "Look-alikes (%(total)s)": "類似ドメイン(%(total)s 件)",
    "all": "すべて",
    "Show": "表示",
    "Look for new ones now": "今すぐ新しいものを探す",
    "Export": "書き出し",
    "Imitates": "模倣先",
    "Distance": "編集距離",
    "Similarity": "見た目の類似度",
    "Resolves to": "名前解決先",
    "does not resolve": "名前解決されない",
    "No look-alikes found.": "類似ドメインは見つかっていません。",
    "The brand was not added: %(error)s": "ブランドは追加されませんでした: %(error)s",
    "The brand was not removed: %(error)s": "ブランドは削除されませんでした: %(error)s",
    "%(name)s was not blocked: %(error)s": "%(name)s はブロックされませんでした: %(error)s",
    "%(names)s names looked at: %(new)s new look-alikes.":
        "%(names)s 件の名前を調べました。新しい類似ドメイン: %(new)s 件。",
    "The scan could not read passive DNS: %(error)s":
        "スキャンでパッシブDNSを読めませんでした: %(error)s",
    # the Audit page (audit.html, audit_page.py)
    "Audit log": "監査ログ",
    "a name, an action (rule.add), a user": "名前、操作(rule.add)、ユーザー",
    "Target": "対象",
    "Details": "詳細",
    "No matching changes.": "該当する変更はありません。",
    "No changes recorded yet.": "変更の記録はまだありません。",
    "Older entries": "さらに古い記録",
    # alerts
    "Severity": "重要度",
    "Subject": "件名",
    "Message": "メッセージ",
    "Delivered": "送信済み",
    "Failed": "失敗",
    "No alerts yet.": "アラートはまだありません。",
    # reports
    "Status": "状態",
    "Close": "対応済みにする",
    "open": "未対応",
    "closed": "対応済み",
    "No false-positive reports.": "誤検知の報告はありません。",
    # AS and country of addresses (pdns.html, geo.html, geo_page.py)
    "Countries": "国別",
    "AS": "AS(組織)",
    "Country": "国",
    "Names hosted on this AS": "このASでホストされている名前",
    "No address databases: add a [geo] section to the configuration.":
        "アドレスのデータベースがありません。設定に [geo] セクションを追加してください。",
    "Days": "日数",
    "AS number": "AS番号",
    "Blocks by destination country": "接続先の国別ブロック数",
    "A blocked name's countries are those of the addresses passive DNS saw for it;"
    " %(unknown)s: none known.":
        "ブロックした名前の国は、パッシブDNSで観測されたそのアドレスの国です。"
        "%(unknown)s: 不明。",
    "Blocks": "ブロック数",
    "No blocks in this window.": "この期間のブロックはありません。",
}
# fmt: on
