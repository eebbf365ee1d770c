"""Word lists and patterns the QC rules read: English lexical data only, no logic.

Why a module of its own: a reader who wants to add an antonym pair or a request verb changes data
here without reading a rule. Everything here is English; `QualityConfig.language` switches the
checks that read it off for other languages (see `rules.ENGLISH_ONLY`).
"""

from __future__ import annotations

import re

_URL = re.compile(r"\bhttps?://[^\s<>\"'`]+|\bwww\.[^\s<>\"'`]+", re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
_PLACEHOLDER = re.compile(
    r"\{\{\s*[\w.]+\s*\}\}|\{[\w.]+\}|<[A-Z][A-Z0-9_]*>|\[[A-Z][A-Z0-9_ ]*\]|\$\{?[A-Z][A-Z0-9_]*\}?")
_TIME = re.compile(r"\b\d{1,2}:\d{2}\b")
# Clock times in words, read as digits before `_TIME` looks: "half past two" == "2:30",
# "a quarter to six" == "5:45"; "seven o'clock" is the number 7, as "7 pm" and "seven in the
# evening" are (the rules read those as numbers).
_HOURS = {w: i + 1 for i, w in enumerate(
    "one two three four five six seven eight nine ten eleven twelve".split())}
_HOUR = r"(\d{1,2}|" + "|".join(_HOURS) + r")"
_WORD_TIME = re.compile(r"(?<![:.\d])\b(?:(?:a\s+)?(half|quarter)\s+(past|to)\s+" + _HOUR
                        + r"|" + _HOUR + r"\s*o['’]clock)\b", re.I)
_TOKEN = re.compile(r"(?:[A-Za-z]\.){2,}|\d+(?:[.,]\d+)*|[A-Za-z]+(?:['’][A-Za-z]+)?|[^\sA-Za-z\d]")
# A full stop after these does not start a sentence ("Mr. Smith", "Acme Corp. said").
_ABBREVIATIONS = frozenset("mr mrs ms dr st sen rep gov gen lt col capt prof corp inc co ltd jr sr vs no".split())
# Titles and honorifics are capitalised but are not the entity: "Mr. Bush" == "President Bush".
_TITLES = frozenset("""mr mrs ms dr sir madam lord lady president senator sen rep representative
governor gov mayor minister prime chancellor secretary judge justice general gen lt col capt
captain prof professor chairman chairwoman chair chief executive ceo cfo king queen prince
princess pope officer sergeant detective""".split())
_WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_BULLET = re.compile(r"^\s*(?:[-*•‣▪–]|\d+[.)])\s+\S", re.M)
_LIST_OR_CODE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S|```|^\s*(?:def|class|import|SELECT)\b", re.M | re.I)

_CARDINALS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}
_UNITS = {
    **_CARDINALS,
    # multiplicative words that state a count
    # not "pair": "a pair of running shoes" is one item, "pair the speaker" a verb
    "twice": 2, "thrice": 3, "dozen": 12, "half": 0.5, "quarter": 0.25,
    "doubled": 2, "tripled": 3, "quadrupled": 4, "halved": 0.5,
}
# "one" is usually a pronoun or the article's twin ("buying one", "one account"):
# comparing it would punish harmless rewrites, and a real 1 -> 2 swap is still
# caught by the new "two".
_UNITS_IGNORED = {"one"}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000,
           "trillion": 1_000_000_000_000, "k": 1_000, "m": 1_000_000, "bn": 1_000_000_000}
_ORDINALS = {"third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
             "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "twentieth": 20,
             "thirtieth": 30, "fortieth": 40, "fiftieth": 50, "sixtieth": 60, "seventieth": 70,
             "eightieth": 80, "ninetieth": 90, "hundredth": 100}
# "1st"/"2nd" spelled as words. `_numbers` leaves "first" and "second" alone ("a second" is a
# time unit, "first" an adverb); the rules accept them only as a restated ordinal.
_ORDINAL_WORDS = {"1th": "first", "2th": "second"}
# An ordinal word before these is part of a compound, not a number: "third-party", "third-rate".
_NOT_ORDINAL_AFTER = frozenset({"party", "parties", "rate", "hand", "wave"})
_ORDINAL_DIGITS = re.compile(r"^(\d+)(?:st|nd|rd|th)$", re.I)
# Time units in seconds, so that "30 minutes" == "half an hour" and "a week-long trip" ==
# "a seven-day trip". Calendar units only convert among themselves (a month is not 30 days).
_DURATION = {"second": (1, "s"), "minute": (60, "s"), "hour": (3600, "s"), "day": (86400, "s"),
             "week": (604800, "s"), "fortnight": (1209600, "s"), "millisecond": (0.001, "s"),
             "month": (1, "mo"), "year": (12, "mo"), "decade": (120, "mo"),
             "century": (1200, "mo")}
# Spans stated without a digit: "an hour and a half" (5400 s), "three quarters of an hour",
# "over the past fortnight" (one unit). Group 1: the count ("a"/"an"/"one" = 1, "two", ...),
# group 2: the unit; `_span_durations` reads them.
_SPAN_AND_A_HALF = re.compile(r"\b(a|an|one|two|three|four|five|six|\d+)[ -](hour|day|week|month|year)s?"
                              r" and a half\b")
_SPAN_QUARTERS = re.compile(r"\b(a|one|three) quarters? of an hour\b")
_SPAN_LAST = re.compile(r"\b(?:past|last|next|coming|previous|following) "
                        r"(second|minute|hour|day|week|fortnight|month|year|decade|century)\b")
# Words that state a small number without its digit ("a couple of", "both", "noon"): a
# number missing on one side is not lost when the other says it this way.
_NUMBER_SAID = {"1": frozenset("one a an single once first solo sole".split()),
                "2": frozenset("couple pair pairs both twice double dual second either".split()),
                "0": frozenset("no without none zero nothing never negative free".split()),
                "12": frozenset("noon midday midnight dozen".split())}
# Fiscal quarters: "Q3" == "third quarter" == "third-quarter".
_QUARTER_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4}
_UNIT_WORDS = {
    **{u: "time:" + u.rstrip("s") for u in (
        "second seconds minute minutes hour hours day days week weeks month months year years "
        "decade decades fortnight fortnights millisecond milliseconds").split()},
    **{u: "time:century" for u in ("century", "centuries")},
    "ms": "time:millisecond",
    **{u: "dist:" + c for c, us in {"km": "km kilometer kilometers kilometre kilometres",
                                    "mi": "mile miles", "m": "meter meters metre metres"}.items()
       for u in us.split()},
    **{u: "data:" + u.lower() for u in "KB MB GB TB kb mb gb tb".split()},
}
_CURRENCY_WORDS = {
    "$": "USD", "usd": "USD", "dollar": "USD", "dollars": "USD", "€": "EUR", "eur": "EUR",
    "euro": "EUR", "euros": "EUR", "£": "GBP", "gbp": "GBP", "pound": "GBP", "pounds": "GBP",
    "¥": "JPY", "yen": "JPY", "jpy": "JPY", "₹": "INR", "inr": "INR", "rupee": "INR",
    "rupees": "INR",
}

# Demonyms and their countries: "a US tourist" == "an American tourist".
_DEMONYMS = {
    "american": ("us", "usa", "america"), "british": ("uk", "britain"), "english": ("england",),
    "scottish": ("scotland",), "welsh": ("wales",), "irish": ("ireland",),
    "dutch": ("netherlands", "holland"), "french": ("france",), "german": ("germany",),
    "spanish": ("spain",), "portuguese": ("portugal",), "swiss": ("switzerland",),
    "swedish": ("sweden",), "danish": ("denmark",), "norwegian": ("norway",),
    "finnish": ("finland",), "polish": ("poland",), "greek": ("greece",), "turkish": ("turkey",),
    "chinese": ("china",), "japanese": ("japan",), "thai": ("thailand",),
    "vietnamese": ("vietnam",), "filipino": ("philippines",), "israeli": ("israel",),
    "belgian": ("belgium",), "austrian": ("austria",), "czech": ("czechia",),
    "hungarian": ("hungary",), "icelandic": ("iceland",),
}

_NEGATION = re.compile(
    r"\b(?:not|no|never|none|nobody|nothing|nowhere|neither|without|cannot|nonstop|"
    r"non(?=-\w)(?!-profit|-fiction|-stick)|rather\s+than|instead\s+of|"
    r"(?:steer|steers|steered|steering)\s+clear\s+of|"
    r"(?:fail|fails|failed|failing)\s+to|unsuccessful|unsuccessfully|unable|refuse|refuses|refused|"
    r"(?:decline|declines|declined)\s+to\s+(?!a\b|an\b|the\b|\d)|"
    r"(?:has|have|had|is|are|was|were)\s+yet\s+to|"
    r"avoid|avoids|avoided|avoiding)\b|n['’]t\b|\bnor\b",
    re.I)
# Idioms that contain a negator but do not negate ("nothing but" = only).
_NOT_NEGATION = re.compile(
    r"\b(?:nothing (?:but|else|beyond|other than|more than)|"
    r"no (?:more|less|fewer|later|earlier|sooner|longer|shorter|bigger|larger|"
    r"higher|greater|older|wider) than|none other than|"
    r"not only|no doubt|no matter)\b", re.I)
_NEITHER_NOR = re.compile(r"\bneither\b.*\bnor\b", re.I | re.S)

# Common antonym groups: a word in one text whose opposite replaces it in the
# other.  Irregular forms after "|"; regular inflections are generated.
_ANTONYM_PAIRS = [
    ("increase", "decrease"), ("increase", "reduce"), ("rise|rose|risen", "fall|fell|fallen"),
    ("rise|rose|risen", "drop|dropped"), ("rise|rose|risen", "decline"),
    ("climb", "fall|fell|fallen"), ("raise", "cut"), ("raise", "lower"), ("gain", "lose|lost"),
    ("up", "down"), ("before", "after"), ("earlier", "later"), ("early", "late"),
    ("allow", "block"), ("allow", "deny|denied"), ("allow", "forbid|forbade|forbidden"),
    ("allow", "prohibit"), ("enable", "disable"), ("accept", "reject"), ("accept", "decline"),
    ("approve", "reject"),
    ("buy|bought", "sell|sold"), ("more", "less"), ("more", "fewer"), ("most", "least"),
    ("higher", "lower"), ("highest", "lowest"), ("high", "low"), ("open", "close"),
    ("open", "shut"), ("reopen", "close"), ("win|won", "lose|lost"), ("winner", "loser"),
    ("beat", "lose|lost"), ("profit", "loss"), ("gain", "loss"), ("best", "worst"),
    ("better", "worse"), ("first", "last"), ("above", "below"), ("over", "under"),
    ("inside", "outside"), ("include", "exclude"), ("add", "remove"), ("import", "export"),
    ("upload", "download"), ("upgrade", "downgrade"), ("install", "uninstall"), ("start", "stop"),
    ("start", "end"), ("begin|began|begun", "end"), ("maximum", "minimum"), ("max", "min"),
    ("largest", "smallest"), ("biggest", "smallest"), ("large", "small"), ("big", "small"),
    ("long", "short"), ("always", "never"), ("all", "none"), ("true", "false"),
    ("success", "failure"), ("succeed", "fail"), ("pass", "fail"), ("positive", "negative"),
    ("hot", "cold"), ("light", "dark"), ("day", "night"), ("morning", "evening"),
    ("old", "young"), ("old", "new"), ("man|men", "woman|women"), ("boy", "girl"),
    ("male", "female"), ("husband", "wife"), ("father", "mother"), ("son", "daughter"),
    ("brother", "sister"), ("king", "queen"), ("north", "south"), ("east", "west"),
    ("credit", "debit"), ("deposit", "withdraw|withdrew|withdrawn"), ("arrive", "depart"),
    ("arrival", "departure"), ("push", "pull"), ("full", "empty"), ("crowded", "empty"),
    ("busy", "empty"), ("cheap", "expensive"), ("fast", "slow"), ("easy", "hard"),
    ("easy", "difficult"), ("strong", "weak"), ("same", "different"), ("public", "private"),
    ("internal", "external"), ("domestic", "international"), ("online", "offline"),
    ("input", "output"), ("guilty", "innocent"), ("convict", "acquit"), ("sentence", "acquit"),
    ("arrest", "release"), ("build|built", "destroy"), ("laugh", "cry|cried"), ("love", "hate"),
    ("benefit", "risk"), ("benefit", "harm"), ("pros", "cons"), ("strength", "weakness"),
    ("monthly", "annual"), ("monthly", "yearly"), ("daily", "weekly"), ("active", "passive"),
    ("take off|taking off|took off|takes off", "land"), ("asleep", "awake"),
    ("sleep|slept", "wake|woke"), ("catch|caught", "miss"), ("expand", "shrink|shrank"),
    ("strengthen", "weaken"), ("inbound", "outbound"), ("cancel", "confirm"), ("pause", "resume"),
    ("hire", "fire"), ("join", "leave"), ("on time", "late"),
]
# Words that carry a negation in their meaning: "lost power" == "without power", "hates" ==
# "can't stand", "forgot" == "can't remember", "keep it private" == "don't share it",
# "struggle to sleep" == "can't sleep". The polarity check lets a rewrite trade one for an
# explicit negator (the text with fewer negators has it, the other lacks it); they never count
# as negators by themselves, so "forgot" -> "remembered" is left to the other checks. Base
# forms; regular inflections are generated, irregular ones follow "|".
_PRIVATIVE = ("lose|lost", "lack", "miss", "forget|forgot|forgotten", "hate", "dislike",
              "absent", "deny|denied", "prevent", "private", "stop", "quit", "cease", "omit",
              "skip", "exclude", "ignore", "free", "fail", "await", "pending", "struggle")
# "without losing X" == "don't change X" == "while keeping X": the polarity check excuses a flip
# when the text with fewer negators has one of these and the other does not, so "without losing
# X" dropped still flips.
# "leave out" / "left out" == "omit": a privative (see `_PRIVATIVE`) when "out" follows.
_LEAVE = frozenset({"leave", "leaves", "leaving", "left"})
_KEEP_WORDS = ("keep|kept", "retain", "preserve", "maintain", "intact", "leave|left", "unchanged",
               "untouched", "hold|held", "stay|stayed")
# ... and the other text must forbid one of these ("without changing", "don't lose"), so "keeps
# crashing" -> "doesn't crash" still flips.
_ALTER_WORDS = ("change", "alter", "modify", "touch", "lose|lost", "remove", "delete", "drop",
                "edit", "rewrite|rewrote|rewritten", "break|broke|broken")
# Request verbs that name the same task: "explain the rules as a table" == "present the rules
# as a table". A small edit that only swaps one of these for another of its group is a
# rewording, not a new operation (summarise -> critique stays a change: other groups).
_TASK_VERBS = ("write|wrote|written|compose|draft|pen|craft|prepare|produce|create",
               "explain|describe|present|clarify|walk through",
               "rewrite|rewrote|rewritten|convert|rephrase|reword|transform|recast",
               "critique|evaluate|assess|appraise|analyze|analyse|examine|review",
               "summarize|summarise|sum up|recap|condense",
               "list|name|give|gave|given|provide|enumerate|share|offer|tell|told",
               "suggest|recommend|propose",
               "fix|correct|repair",
               "find|found|locate|look up|identify",
               "check|verify|confirm",
               "help|assist", "book|reserve")
_PREFIX_NEGATION = ("un", "dis", "in", "im", "non")

_STOPWORDS = frozenset("""
a an the and or but if then else so of to in on at by for with from into onto over under about
as than too very can could would should will shall may might must do does did done doing be is am
are was were been being have has had having i me my mine we us our ours you your yours he him his
she her hers it its they them their theirs this that these those there here what which who whom
whose when where why how all any both each few some such own just also only even still yet
please kindly get got gets getting make makes made let lets s t d ll m re ve o y ago via per
not no never nor n't up out off again further once whether while within without through during
because since until unless though although after before above below between among around
one ones thing things way something anything someone anyone like want need wants needs
""".split())

_REQUEST_START = frozenset("""
add adjust advise analyze analyse answer apply arrange ask assess avoid book build calculate
cancel change check choose clarify classify compare compose confirm continue convert correct
create define delete describe design determine develop disregard do don't draft edit email
enable disable enter estimate evaluate explain export extract fill find fix forget format generate
give go help identify ignore implement improve include inform instruct issue keep let list locate
look make mention move name note offer open order outline paraphrase pick plan please point
prepare print produce propose provide put rank rate read recommend reduce refund remind remove
rename render reorder repeat rephrase replace reply report request reset resolve respond restate
restore return review rewrite say schedule send set share show simplify sort specify start state
stop suggest sum summarise summarize switch take talk teach tell translate try turn update use
verify walk warn write kindly help could can would will may might should shall do does did is
are was were am how what why when where which who whom whose isn't aren't doesn't don't can't
cannot won't pls
assemble brainstorm break come compile compute condense craft critique debug devise draw
elaborate enumerate illustrate imagine jot lay map name outline pick polish port present
proofread pull render research scale shorten sketch spell tally weigh
reserve buy cook bake organize organise transfer upgrade downgrade unsubscribe subscribe waive
dispute block unblock activate deactivate reactivate renew extend track pay
rework plot chart graph tabulate work figure boil narrow match merge split group filter count
get fetch grab parse
revise refactor optimize optimise modify tweak trim troubleshoot diagnose reformat reword
steer
judge swap script announce differentiate integrate solve prove derive factor expand contrast
discuss interpret justify predict reword reformat restructure trim tighten lengthen caption
annotate grade score proof refactor optimize optimise configure install migrate automate invite
notify thank congratulate decline recap rate compare reply draw sketch locate come identify
""".split())
#: The imperative verbs of `_REQUEST_START` (not its auxiliaries, question words or "let").
_REQUEST_VERBS = _REQUEST_START - frozenset("""
let please kindly could can would will may might should shall do does did is are was were am
how what why when where which who whom whose isn't aren't doesn't don't can't cannot won't
""".split())
_WANTS = re.compile(r"^\W*(?:i(?:'d| would) (?:like|ask|appreciate|be grateful)|i want|i need|i wish|"
                    r"i['’]?m looking for|i am looking for|"
                    r"i ask that|help me|let me know)\b", re.I)
# A statement that still prescribes ("All admin accounts should have 2FA") is an instruction.
_DEONTIC = re.compile(
    r"\b(?:should|must|(?:needs?|needed) to|(?:has|have|had) to|ought to|"
    r"(?:is|are|was|were) required to)\b", re.I)
#: What a name already says it is: "in my Nimbus Home app" == "in Nimbus Home", "my Chase
#: account" == "my Chase". A cut of one of these right after a name drops nothing.
_NAME_HEADS = frozenset("""app apps application account website site platform service software
program tool company brand store shop device game library package framework api""".split())
#: Capitalised words that are not names when they stand inside a sentence (sentence openers,
#: imperatives, weekdays, months, languages): the roles check and the rule-made swaps read the
#: other capitalised words as names.
_NOT_NAMES = frozenset("""I I'm I've I'd I'll Can Could Please What How Why When Where Which
Who Would Should Is Are Do Does Give Write Make Help Tell Explain List The A An My Our This That
These Those It If And But Or So For In On At To From With By Also Then Thanks Thank Hi Hello
Dear Here There Just Only Now Next Each Every Any All Some Note Keep Use Don't Monday Tuesday
Wednesday Thursday Friday Saturday Sunday January February March April May June July August
September October November December English Spanish French German Portuguese Italian Chinese
Mandarin Cantonese Japanese Korean Arabic Hindi Russian Dutch Polish Turkish Swedish Greek
Hebrew Vietnamese Thai Urdu""".split())
_FIRST_PERSON = frozenset("i i'm i'd i've i'll me my mine myself we we're we'd we've we'll us our "
                          "ours ourselves".split())
_SECOND_POSSESSIVE = frozenset("your yours yourself yourselves".split())
# The variant speaks as the assistant: it apologises for the user's problem.
_APOLOGY = re.compile(r"\b(?:i['’]?m sorry|i am sorry|we['’]?re sorry|sorry (?:for|about)|"
                      r"(?:i|we) apologi[sz]e|(?:my|our) apologies|apologies for)\b", re.I)
# The variant talks about the rewriting itself: the paraphrase prompt leaked into it.
_REWRITE_TALK = re.compile(r"\b(?:rewrit\w*|paraphras\w*|rephras\w*|reword\w*)\b|"
                           r"\b(?:this|the) (?:message|text|original)\b", re.I)
_LEADING_CLAUSE = re.compile(
    r"^(?:in|within|on|for|with|without|after|before|when|whenever|if|using|by|until|once|"
    r"as|at|from|under|over|based on|given|\w+ing)\b[^,?]{0,80},\s*", re.I)
# Where a later sentence may start its ask: after . ! ? : ; (a closing quote or bracket may
# follow: "Here's an argument: '... does.' Critique it.") and at line breaks.
_ASK_SPLIT = re.compile(r"(?<=[.!?:;])\s+|(?<=[.!?:;]['\"”’)])\s+|\n+")
# A fronted adverb before an imperative: "First, compose ...", "Then, list ...".
_LEADING_ADVERB = re.compile(r"^(?:first|then|next|finally|also|now|afterwards?|lastly|"
                             r"briefly|quickly|again|together)\b,?\s*", re.I)
# An ask anywhere in the text ("Here is my draft. Could you tighten it", "... and tell me why").
# Not "let me": "Let me know if you need anything else" closes an assistant's answer.
_ASK = re.compile(r"\b(?:can|could|would|will) you\b|\b(?:tell|give|show|walk|help|send) me\b|"
                  r"\bi(?:['’]d| would) (?:like|love|appreciate)\b|\bi (?:need|want)\b", re.I)
# Present the user's input, then ask: "Here's my draft: ... Can you tighten it?" is a request.
_HERE_OPENER = re.compile(r"^\W*here(?:['’]s| is| are)\b", re.I)
_ANSWER_OPENER = re.compile(
    r"^\W*(?:sure|certainly|of course|absolutely|here(?:'s| is| are)|yes|no[,.!]|great question|"
    r"hi|hello|dear|thanks|thank you|okay|ok[,.!]|as an ai)\b", re.I)
_TO_CLAUSE = re.compile(r"^\W*to\s+\w+[^,?.]{0,80},\s*\w", re.I)
_INJECTION = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\b[^.?!]{0,40}\b(?:instructions?|rules?|"
    r"prompts?|directions?|guidelines?|(?:the|everything|all) above|"
    r"what (?:you were|you've been|i) (?:told|said))", re.I)
_INJECTION_VERB = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass|set aside|pay no attention|stop following|"
    r"do not follow|don't follow)\b", re.I)

_REFUSAL_DECLINE = re.compile(
    r"\b(?:can(?:no|')t|cannot|can not|won['’]?t|will not|unable to|not able to|not going to|"
    r"must decline|have to decline|(?:i|we)\s+decline|refuse|sorry|apologi[sz]e|not (?:something|"
    r"able)|not (?:allowed|permitted))\b", re.I)
_REFUSAL_REASON = re.compile(
    r"\b(?:because|since|as (?:it|this|that|doing)|due to|could (?:cause|lead|harm|hurt|be)|"
    r"(?:it|this|that|this request|the request|doing so) (?:would|could|might)|"
    r"would (?:cause|be|put|harm|violate|give|let|allow|enable|reveal|expose|bypass|help)|illegal|unlawful|harmful|dangerous|unsafe|risk|"
    r"against (?:the )?(?:law|policy|policies|rules)|privacy|violat\w*|harm\w*|hurt|abuse|"
    r"consent|safety|fraud\w*|weapon\w*|crime|criminal)\b", re.I)
_REFUSAL_ALTERNATIVE = re.compile(
    r"\b(?:instead|however|but i can|but we can|i can help|i could help|we could help|"
    r"i'd be happy|i would be happy|i'd be glad|i can (?:show|walk|explain|guide)|"
    r"happy to help|glad to help|you (?:could|can|may|might) (?:try|contact|reach|ask|visit|"
    r"consider|talk|speak|call|look)|consider|recommend|suggest|alternatively|"
    r"what i can do|if you(?:'re| are) (?:interested|looking)|reach out|contact)\b", re.I)

# For the judge head (`judges.pair_features`): words that name an output form, and words that
# bound or qualify a request. A rewrite that loses or gains one often asks for something else
# ("as a table" -> "as a list", "only the first 3" -> "the first 3"); the head weighs them with
# everything else, no rule rejects on them alone. Not "step": "How do I ...?" -> "What are the
# steps to ...?" asks the same.
_FORMAT_WORDS = frozenset("""
table list bullet bulleted json csv yaml xml markdown html paragraph essay email letter memo tweet
post thread code script function class query sql chart graph diagram outline summary report slide
haiku poem limerick sonnet story spreadsheet array numbered checklist timeline flashcard quiz
headline title caption sentence word page minute
""".split())
_LIMIT_WORDS = frozenset("""
only each every all exactly least most under within without per maximum minimum max min first
last next top both either also just specific specifically particular including include excluding
""".split())
_COORDINATORS = re.compile(r"\b(?:and|then|also|plus|as well as)\b|;", re.I)
# Output forms a request can ask for, grouped by what counts as the same form. A variant that
# asks for a form of another group AND drops the original's ("as a table" -> "as a bulleted
# list", "an email" -> "a call script") changed the deliverable. Length units (words,
# sentences, minutes) are not forms: numbers and the judge cover them.
_OUTPUT_FORMS = ("list|lists|bullet|bullets|bulleted|checklist|checklists",
                 "table|tables|grid|matrix", "json", "csv", "yaml", "xml", "markdown", "html",
                 "paragraph|paragraphs|prose", "essay|essays", "email|emails|e-mail",
                 "letter|letters", "memo|memos", "tweet|tweets", "script|scripts",
                 "chart|charts|graph|graphs|plot|plots", "diagram|diagrams|flowchart",
                 "outline|outlines", "slide|slides|deck", "haiku|haikus",
                 "poem|poems|verse", "limerick|limericks", "sonnet|sonnets",
                 "flashcard|flashcards", "quiz|quizzes", "timeline|timelines",
                 "flyer|flyers|poster", "text message|sms")

# Periods a request is measured or repeated over ("100 requests per minute", "compounded
# monthly", "sales from last month") and units of measure. One swapped for another of its kind
# while every number stays ("per minute" -> "per hour", "monthly" -> "every quarter", "3,000
# meters" -> "3,000 feet", "grams" -> "milliliters") asks for another thing; a conversion changes
# the number too ("30 seconds" -> "half a minute") and is left to the duration rules. On the
# 6,832 written judge pairs, among those the other rules accepted, the period swap fired on 22
# meaning changes and 1 faithful rewrite, the measure swap on 13 and 1.
_PERIOD_OF = {"second": "second", "minute": "minute", "hour": "hour", "day": "day",
              "night": "day", "week": "week", "weekend": "weekend", "fortnight": "fortnight",
              "month": "month", "quarter": "quarter", "year": "year", "semester": "semester",
              "decade": "decade", "hourly": "hour", "daily": "day", "nightly": "day",
              "weekly": "week", "biweekly": "fortnight", "fortnightly": "fortnight",
              "monthly": "month", "quarterly": "quarter", "yearly": "year", "annually": "year",
              "annual": "year"}
_PERIOD = re.compile(
    r"\b(?:per|a|an|each|every|this|next|last|the|that|one|by)\s+(?:single\s+)?"
    r"(second|minute|hour|day|night|week|weekend|fortnight|month|quarter|year|semester|decade)s?\b"
    r"|\b(hourly|daily|nightly|weekly|biweekly|fortnightly|monthly|quarterly|yearly|annually"
    r"|annual)\b", re.I)
_WEEKDAY = re.compile(r"\b(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)s?\b")
# The half of the day a clock time is in: "3:30 am" == "half past three in the morning", not
# "... in the afternoon" (groups 1 and 3 say am; 2, 4 and 5 say pm).
_DAY_HALF = re.compile(r"(?:\d\s*(?:(a\.?m\.?)|(p\.?m\.?))(?!\w))|\b(?:in the (?:(morning)|"
                       r"(afternoon|evening))|(at night|tonight))\b", re.I)
# not "pound" (also money) nor "m" (also million)
_MEASURE_OF = {
    "cm": "cm", "centimeter": "cm", "centimetre": "cm", "mm": "mm", "millimeter": "mm",
    "millimetre": "mm", "inch": "inch", "foot": "foot", "feet": "foot",
    "meter": "meter", "metre": "meter", "yard": "yard", "mile": "mile", "km": "km",
    "kilometer": "km", "kilometre": "km", "gram": "gram", "kg": "kg", "kilogram": "kg",
    "lb": "lb", "ounce": "oz", "oz": "oz", "liter": "liter", "litre": "liter",
    "milliliter": "ml", "millilitre": "ml", "ml": "ml", "cup": "cup", "gallon": "gallon",
    "quart": "quart", "pint": "pint", "tablespoon": "tablespoon", "tbsp": "tablespoon",
    "teaspoon": "teaspoon", "tsp": "teaspoon", "celsius": "celsius", "fahrenheit": "fahrenheit"}
_MEASURE = re.compile(r"\b(%s)(?:e?s)?\b" % "|".join(sorted(_MEASURE_OF, key=len, reverse=True)),
                      re.I)
